//! Entry point: creates the store (the SDK's ImClient against this page's own origin, since the api
//! serves both the client and the JSON API), renders the app, and resumes a saved login.

import { render } from "preact";
import "./styles.css";
import { Store } from "./store";
import { App } from "./ui/App";
import { StoreContext } from "./ui/context";

const store = new Store("");
const root = document.getElementById("app");
if (root) {
  render(
    <StoreContext.Provider value={store}>
      <App />
    </StoreContext.Provider>,
    root,
  );
}
void store.start();
