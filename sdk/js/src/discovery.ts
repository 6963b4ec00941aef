//! Finding comets: goim's `GET /goim/nodes/weighted` on the api (public), turned into websocket URLs and
//! the server's heartbeat settings. Invariant: the URLs are least-loaded first, as the server ordered
//! them; `wss://` is used when the api was reached over https and the server has a wss port.

export interface CometDirectory {
  /** Websocket URLs (`ws://host:port/sub`), least loaded first. */
  urls: string[];
  /** The heartbeat interval the server expects, in milliseconds. */
  heartbeatMs: number;
  /** How many intervals may pass without a heartbeat before the server closes. */
  heartbeatMaxMisses: number;
}

type Fetch = (input: string, init?: { headers?: Record<string, string> }) => Promise<{ ok: boolean; status: number; json(): Promise<unknown> }>;

interface WeightedReply {
  code?: number;
  message?: string;
  data?: { nodes?: string[]; ws_port?: number; wss_port?: number; heartbeat?: number; heartbeat_max?: number };
}

/**
 * Reads the comet list from an api at `apiBase` (e.g. `http://127.0.0.1:3111`, or `""` for the page's
 * own origin in a browser).
 */
export async function discoverComets(apiBase: string, fetchFn?: Fetch): Promise<CometDirectory> {
  const f = fetchFn ?? (globalThis.fetch as unknown as Fetch);
  const res = await f(`${apiBase}/goim/nodes/weighted?platform=web`);
  if (!res.ok) throw new Error(`GET /goim/nodes/weighted: HTTP ${res.status}`);
  const body = (await res.json()) as WeightedReply;
  if (body.code !== 0 || !body.data) throw new Error(`GET /goim/nodes/weighted: ${body.message ?? "no data"}`);
  const d = body.data;
  const secure = apiBase.startsWith("https:") || (apiBase === "" && globalThis.location?.protocol === "https:");
  const urls = (d.nodes ?? []).map((addr) => {
    if (secure && d.wss_port) {
      const host = addr.replace(/:\d+$/, "");
      return `wss://${host}:${d.wss_port}/sub`;
    }
    return `ws://${addr}/sub`;
  });
  return {
    urls,
    heartbeatMs: Math.max(1, d.heartbeat ?? 30) * 1000,
    heartbeatMaxMisses: d.heartbeat_max ?? 3,
  };
}
