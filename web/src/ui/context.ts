//! The store, handed to every component, and the hook that re-renders a component when it changes.

import { createContext } from "preact";
import { useContext, useEffect, useReducer } from "preact/hooks";
import type { Store } from "../store";

export const StoreContext = createContext<Store | null>(null);

/** The store; the calling component re-renders on every change. */
export function useStore(): Store {
  const store = useContext(StoreContext);
  if (!store) throw new Error("StoreContext missing");
  const [, bump] = useReducer((n: number) => n + 1, 0);
  useEffect(() => {
    const off = store.subscribe(() => bump(undefined));
    // A change between the render and this effect (the store starts at once) is not missed.
    bump(undefined);
    return off;
  }, [store]);
  return store;
}
