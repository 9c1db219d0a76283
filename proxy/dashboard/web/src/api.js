// The dashboard reads the public stats API only, as any client could (README "For analysts"): the same
// endpoints, the same JSON and CSV, the same suppression. The session cookie stands for the analyst key.

export class SessionEnded extends Error {}
export class ApiError extends Error {}

async function failure(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && typeof body.error === "string") message = body.error;
  } catch {
    // not JSON: keep the status line
  }
  if (response.status === 401) return new SessionEnded(message);
  return new ApiError(message);
}

export class Api {
  /** @param {string} site */
  constructor(site) {
    this.site = site;
  }

  /** POST /api/v2/query with this site's id; the answer's JSON. */
  async query(body) {
    const response = await fetch("/api/v2/query", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ site_id: this.site, ...body }),
      credentials: "same-origin",
      cache: "no-store",
    });
    if (!response.ok) throw await failure(response);
    return response.json();
  }

  /** The same query answered as CSV (suppression applied by the API), as a Blob. */
  async csv(body) {
    const response = await fetch("/api/v2/query", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/csv" },
      body: JSON.stringify({ site_id: this.site, ...body }),
      credentials: "same-origin",
      cache: "no-store",
    });
    if (!response.ok) throw await failure(response);
    return response.blob();
  }

  /** Visitors in the last 5 minutes (GET /api/v1/stats/realtime/visitors). */
  async realtime() {
    const response = await fetch(`/api/v1/stats/realtime/visitors?site_id=${encodeURIComponent(this.site)}`, {
      credentials: "same-origin",
      cache: "no-store",
    });
    if (!response.ok) throw await failure(response);
    return response.json();
  }

  /** The whole-site export (a zip of CSVs) for a range: a plain link, downloaded by the browser. */
  exportUrl(range) {
    const p = new URLSearchParams({ site_id: this.site });
    if (Array.isArray(range)) {
      p.set("period", "custom");
      p.set("date", range.join(","));
    } else {
      p.set("period", range);
    }
    return `/api/v1/export?${p}`;
  }
}

/** Save a Blob under a file name (an object URL, revoked once the download has started). */
export function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
