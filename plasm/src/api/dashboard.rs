//! The node's dashboard: one page at `/` and its two assets, embedded in the binary.
//!
//! The page is rendered here with the node's status already in it, so it reads
//! without JavaScript (a status page to reload); `ui/app.js` then takes over: it
//! asks for the API token once (kept in `sessionStorage`, sent as a bearer token,
//! never in a URL), follows `GET /v1/events` for live job states, verifies
//! receipts through `POST /v1/receipts/verify` and sets capacity. Nothing is
//! fetched from anywhere but this node: the Content-Security-Policy says so to
//! the browser, and there is no build step (plain files, no Node.js). When the
//! node has a token file, the server-rendered page holds no status (a page load
//! carries no token), only what to do.

use super::{ApiState, job_json, node_value, peers_value};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::fmt::Write as _;

const APP_JS: &str = include_str!("dashboard/app.js");
const APP_CSS: &str = include_str!("dashboard/app.css");

/// Only this node, only these kinds of resources: no CDN, no inline script, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; \
    frame-ancestors 'none'";

/// Jobs the page lists.
const PAGE_JOBS: usize = 50;

fn secured(mut r: Response, cache: &'static str) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

/// `GET /ui/{file}`: the script and the stylesheet.
pub async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        _ => {
            return super::ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such file")
                .into_response();
        }
    };
    // no-cache: revalidated each load, so a new plasm never runs an old script.
    secured(
        ([(header::CONTENT_TYPE, kind)], body).into_response(),
        "no-cache",
    )
}

/// `GET /`: the dashboard page.
pub async fn page(State(state): State<ApiState>) -> Response {
    let open = state.tokens.is_none();
    let status = if open {
        let node = node_value(&state).await;
        let peers = peers_value(&state).await;
        let jobs = state
            .service
            .recent_jobs(PAGE_JOBS)
            .await
            .map(|rows| rows.iter().map(job_json).collect::<Vec<_>>());
        let served = state
            .service
            .served(PAGE_JOBS)
            .await
            .map(|rows| rows.iter().map(super::served_json).collect::<Vec<_>>());
        Some(Status {
            node,
            peers,
            jobs: jobs.unwrap_or_default(),
            served: served.unwrap_or_default(),
        })
    } else {
        None
    };
    let html = render(status.as_ref(), &crate::time::now_rfc3339());
    secured(
        ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        "no-store",
    )
}

/// HTML-escapes text for element content and quoted attributes.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON value as short text: strings bare, lists joined, null as a dash.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "—".into(),
        Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

fn short(id: &str) -> String {
    if id.chars().count() > 16 {
        let head: String = id.chars().take(8).collect();
        let tail: String = id
            .chars()
            .rev()
            .take(6)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("{head}…{tail}")
    } else {
        id.to_owned()
    }
}

/// Where a job runs, as the page says it: here, or on which peer by which path.
fn place(job: &Value) -> (String, bool) {
    let p = &job["placement"];
    // A job another executor gave up and this one took over says so (receipt v2).
    let taken = job["receipt"]["placement"]["taken_over_from"]
        .as_str()
        .map(|from| format!(", taken over from {}", short(from)))
        .unwrap_or_default();
    match (p["path"].as_str(), p["executor"].as_str()) {
        (Some("local"), _) => (format!("here (local pool{taken})"), false),
        (Some(path), Some(peer)) => {
            let via = p["relay"]
                .as_str()
                .map(|r| format!(" via relay {}", short(r)))
                .unwrap_or_default();
            (format!("peer {} ({path}{via}{taken})", short(peer)), true)
        }
        _ => match p["requested"].as_str() {
            Some(req) => (format!("not placed yet (asked: {req})"), false),
            None => ("—".into(), false),
        },
    }
}

fn row(out: &mut String, dt: &str, dd: &str, id: &str) {
    let _ = write!(out, "<dt>{}</dt><dd id=\"{id}\">{}</dd>", esc(dt), esc(dd));
}

/// What an open page shows.
#[derive(Debug, Default)]
struct Status {
    node: Value,
    peers: Value,
    jobs: Vec<Value>,
    /// Jobs this node ran for peers.
    served: Vec<Value>,
}

/// A finished job's outcome in words: `exited, exit status 0`, `out_of_fuel, exit
/// status 124` (`plasm run`'s table), or why it has no receipt.
fn outcome_text(j: &Value) -> String {
    match (j["outcome"].as_str(), j["exit_status"].as_u64()) {
        (Some(o), Some(c)) => format!("{o}, exit status {c}"),
        (Some(o), None) => o.to_owned(),
        _ => text(&j["error"]),
    }
}

fn render(status: Option<&Status>, now: &str) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let peer = status.map_or(String::new(), |s| text(&s.node["peer_id"]));
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>plasm node {}</title><link rel=\"icon\" href=\"data:,\">\
         <link rel=\"stylesheet\" href=\"/ui/app.css\"><script src=\"/ui/app.js\" defer></script>\
         </head><body data-open=\"{}\">\
         <header><h1>plasm</h1><code id=\"peer-id\" title=\"{}\">{}</code>\
         <span id=\"live\" class=\"pill\">static page, rendered {}</span></header>",
        esc(&short(&peer)),
        status.is_some(),
        esc(&peer),
        esc(&peer),
        esc(now)
    );
    h.push_str(
        "<section id=\"auth\" hidden><h2>API token</h2>\
         <p>This node requires a bearer token. It is kept in this tab only (sessionStorage).</p>\
         <form id=\"token-form\"><input id=\"token\" type=\"password\" autocomplete=\"off\" \
         aria-label=\"API token\" placeholder=\"token\"><button type=\"submit\">Use token</button></form>\
         <p id=\"auth-error\" class=\"bad\"></p></section><main>",
    );
    // A locked page has the same skeleton, empty, for the script to fill.
    let empty = Status::default();
    let Status {
        node,
        peers,
        jobs,
        served,
    } = status.unwrap_or(&empty);
    if status.is_none() {
        h.push_str(
            "<section id=\"locked\"><h2>Status</h2><p>This node has an API token file, so its \
             status is not in the page itself. With JavaScript, enter a token above; without it, \
             use <code>plasm node status --token-file FILE</code> or <code>curl -H \
             'Authorization: Bearer …' /v1/node</code>.</p></section>",
        );
    }
    // Node and reachability.
    let r = &node["reachability"];
    h.push_str("<section id=\"node\"><h2>Node</h2><dl>");
    row(&mut h, "peer id", &text(&node["peer_id"]), "node-peer");
    row(&mut h, "public key", &text(&node["public_key"]), "node-key");
    row(&mut h, "version", &text(&node["version"]), "node-version");
    row(
        &mut h,
        "runtimes",
        &text(&node["capabilities"]["runtimes"]),
        "node-runtimes",
    );
    row(
        &mut h,
        "labels",
        &text(&node["capabilities"]["labels"]),
        "node-labels",
    );
    row(
        &mut h,
        "listening",
        &text(&node["listen_addrs"]),
        "node-listen",
    );
    h.push_str("</dl></section><section id=\"reach\"><h2>Reachability</h2><dl>");
    row(&mut h, "status", &text(&r["status"]), "reach-status");
    row(&mut h, "profile", &text(&r["profile"]), "reach-profile");
    row(&mut h, "DHT mode", &text(&r["dht_mode"]), "reach-dht");
    row(
        &mut h,
        "external addresses",
        &text(&r["external_addrs"]),
        "reach-external",
    );
    row(&mut h, "relays", &text(&r["relays"]), "reach-relays");
    row(
        &mut h,
        "hole punches",
        &format!(
            "{} of {} attempts succeeded",
            text(&r["hole_punches"]["successes"]),
            text(&r["hole_punches"]["attempts"])
        ),
        "reach-punches",
    );
    row(
        &mut h,
        "connected peers",
        &text(&node["connected_peers"]),
        "reach-peers",
    );
    // Capacity.
    let c = &node["capacity"];
    h.push_str("</dl></section><section id=\"capacity\"><h2>Capacity</h2><dl>");
    row(&mut h, "workers", &text(&c["workers"]), "cap-workers");
    row(&mut h, "queue bound", &text(&c["queue"]), "cap-queue");
    row(&mut h, "queued", &text(&c["queued"]), "cap-queued");
    row(&mut h, "running", &text(&c["running"]), "cap-running");
    h.push_str(
        "</dl><form id=\"capacity-form\" hidden><label>workers <input id=\"set-workers\" \
         type=\"number\" min=\"1\" max=\"256\"></label> <label>queue <input id=\"set-queue\" \
         type=\"number\" min=\"0\" max=\"65536\"></label> <button type=\"submit\">Set</button> \
         <output id=\"capacity-result\"></output></form></section>",
    );
    // Peers.
    h.push_str(
        "<section id=\"peers\"><h2>Peers</h2><table><thead><tr><th>peer</th><th>RTT</th>\
         <th>score</th><th>breaker</th></tr></thead><tbody id=\"peers-body\">",
    );
    let list = peers["peers"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        h.push_str("<tr class=\"empty\"><td colspan=\"4\">no connected peers</td></tr>");
    }
    for p in &list {
        let id = text(&p["peer_id"]);
        let rtt = p["rtt_ms"]
            .as_f64()
            .map_or("—".into(), |ms| format!("{ms:.1} ms"));
        let _ = write!(
            h,
            "<tr><td><code title=\"{}\">{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&id),
            esc(&short(&id)),
            esc(&rtt),
            esc(&text(&p["score"])),
            esc(&text(&p["breaker"]))
        );
    }
    // Jobs.
    h.push_str(
        "</tbody></table></section><section id=\"jobs\"><h2>Jobs</h2><table><thead><tr>\
         <th>job</th><th>state</th><th>where it runs</th><th>submitted</th><th>finished</th>\
         <th>outcome</th><th>receipt</th></tr></thead><tbody id=\"jobs-body\">",
    );
    if jobs.is_empty() {
        h.push_str("<tr class=\"empty\"><td colspan=\"7\">no jobs yet</td></tr>");
    }
    for j in jobs {
        let id = text(&j["job_id"]);
        let state = text(&j["state"]);
        let (place, remote) = place(j);
        let outcome = outcome_text(j);
        let _ = write!(
            h,
            "<tr data-job=\"{}\"><td><code title=\"{}\">{}</code></td>\
             <td class=\"state state-{}\">{}</td><td class=\"where{}\">{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td class=\"receipt\">{}</td></tr>",
            esc(&id),
            esc(&id),
            esc(&short(&id)),
            esc(&state),
            esc(&state),
            if remote { " remote" } else { "" },
            esc(&place),
            esc(&text(&j["submitted_at"])),
            esc(&text(&j["finished_at"])),
            esc(&outcome),
            if j["receipt"].is_object() {
                "signed"
            } else {
                "—"
            }
        );
    }
    // Jobs run here for peers: who asked, how each ended, its fuel and time.
    h.push_str(
        "</tbody></table></section><section id=\"served\"><h2>Jobs run for peers</h2><table><thead><tr>\
         <th>job</th><th>requester</th><th>path</th><th>finished</th><th>outcome</th><th>fuel</th>\
         </tr></thead><tbody id=\"served-body\">",
    );
    if served.is_empty() {
        h.push_str("<tr class=\"empty\"><td colspan=\"6\">no jobs run for peers yet</td></tr>");
    }
    for j in served {
        let id = text(&j["job_id"]);
        let ok = j["exit_status"].as_u64() == Some(0);
        let _ = write!(
            h,
            "<tr data-served=\"{}\"><td><code title=\"{}\">{}</code></td><td><code title=\"{}\">{}</code></td>\
             <td>{}</td><td>{}</td><td class=\"state state-{}\">{}</td><td>{}</td></tr>",
            esc(&id),
            esc(&id),
            esc(&short(&id)),
            esc(&text(&j["requester"])),
            esc(&short(&text(&j["requester"]))),
            esc(&text(&j["path"])),
            esc(&text(&j["finished_at"])),
            if ok { "succeeded" } else { "failed" },
            esc(&outcome_text(j)),
            esc(&text(&j["fuel_used"])),
        );
    }
    h.push_str(
        "</tbody></table></section><section id=\"verify\"><h2>Verify a receipt</h2>\
         <p>Paste a receipt (JSON); the node checks its signature and fields.</p>\
         <textarea id=\"verify-input\" rows=\"6\" spellcheck=\"false\" aria-label=\"receipt\">\
         </textarea><p><button id=\"verify-button\" type=\"button\" hidden>Verify</button> \
         <output id=\"verify-result\"></output></p></section></main>\
         <noscript><p class=\"note\">Without JavaScript this is a static status page: reload it \
         to refresh. Live jobs, receipt checks and capacity changes need JavaScript.</p></noscript>\
         </body></html>\n",
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_page_escapes_what_it_shows_and_names_where_jobs_ran() {
        let node = json!({"peer_id": "12D3KooW<script>", "capabilities": {"runtimes": ["wasmtime", "wasm3"]},
                          "reachability": {"status": "private"}, "capacity": {"workers": 2}});
        let jobs = vec![
            json!({"job_id": "a\"b", "state": "succeeded", "placement": {"path": "relayed", "executor": "12D3KooWexecutorpeer", "relay": "12D3KooWrelaypeer"}, "receipt": {"outcome": "exited"}}),
            json!({"job_id": "c", "state": "running", "placement": {"path": "local", "executor": "me"}}),
            json!({"job_id": "d", "state": "succeeded", "placement": {"path": "direct", "executor": "12D3KooWexecutorpeer"},
                   "receipt": {"placement": {"taken_over_from": "12D3KooWfirstexecutor"}}}),
        ];
        let served = vec![
            json!({"job_id": "s1", "requester": "12D3KooWrequesterpeer", "path": "direct",
                                  "finished_at": "2026-12-01T00:00:01Z", "outcome": "out_of_fuel",
                                  "exit_status": 124, "fuel_used": 1000}),
        ];
        let html = render(
            Some(&Status {
                node,
                peers: json!({"peers": []}),
                jobs,
                served,
            }),
            "2026-12-01T00:00:00Z",
        );
        assert!(
            html.contains("out_of_fuel, exit status 124"),
            "a job run for a peer is listed with its outcome"
        );
        assert!(html.contains("data-served=\"s1\""));
        assert!(!html.contains("<script>"), "text is escaped");
        assert!(html.contains("12D3KooW&lt;script&gt;"));
        assert!(html.contains("data-job=\"a&quot;b\""));
        assert!(html.contains("peer 12D3KooW…orpeer (relayed via relay 12D3KooW…aypeer)"));
        assert!(html.contains("here (local pool)"));
        assert!(html.contains("peer 12D3KooW…orpeer (direct, taken over from 12D3KooW…ecutor)"));
        assert!(html.contains("wasmtime, wasm3"));
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no external resources"
        );
    }

    #[test]
    fn a_node_with_tokens_shows_no_status_in_the_page() {
        let html = render(None, "now");
        assert!(html.contains("id=\"locked\""));
        assert!(
            html.contains("jobs-body"),
            "the skeleton is there for the script"
        );
        assert!(!html.contains("12D3KooW"));
    }
}
