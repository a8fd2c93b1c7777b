"""The live page served at `/`: every stream's annotated view (MJPEG) and current warning, refreshed from
/health once a second. Self-contained (inline CSS and JS, no external assets): monitored machines are often
offline."""

PAGE_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>perception: live</title>
<style>
:root { color-scheme: dark; --bg: #111418; --card: #1b2026; --fg: #e6e6e6; --muted: #9aa4ae;
  --ok: #3fb950; --bad: #f85149; --caution: #ffb020; --warning: #ff3b30; }
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: var(--bg); color: var(--fg); }
header { display: flex; gap: 1rem; align-items: center; padding: .6rem 1rem;
  border-bottom: 1px solid #2a3138; }
header h1 { font-size: 1.1rem; margin: 0; }
header nav { margin-left: auto; }
a { color: #58a6ff; }
.muted { color: var(--muted); }
.badge { padding: .1rem .55rem; border-radius: .7rem; font-weight: 600; font-size: .8rem;
  background: #30363d; }
.badge.ok, .badge.up { background: var(--ok); color: #000; }
.badge.degraded, .badge.down { background: var(--bad); color: #000; }
main { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 440px), 1fr)); gap: 1rem;
  padding: 1rem; }
.card { background: var(--card); border-radius: .5rem; overflow: hidden; max-width: 960px; }
.card .head { display: flex; justify-content: space-between; align-items: center; padding: .5rem .75rem; }
.card img { display: block; width: 100%; aspect-ratio: 16 / 9; object-fit: contain; background: #000; }
.warn { padding: .4rem .75rem; font-weight: 700; }
.warn.none { color: var(--muted); font-weight: 400; }
.warn.caution { background: var(--caution); color: #000; }
.warn.warning { background: var(--warning); color: #fff; }
.stats { display: flex; flex-wrap: wrap; gap: .2rem 1rem; padding: .5rem .75rem; color: var(--muted);
  font-variant-numeric: tabular-nums; }
#empty { padding: 1rem; }
</style>
</head>
<body>
<header>
  <h1>perception</h1><span id="status" class="badge">connecting</span><span id="updated" class="muted"></span>
  <nav><a href="/health">health</a> &middot; <a href="/metrics">metrics</a></nav>
</header>
<main id="streams"></main>
<p id="empty" class="muted">waiting for streams&hellip;</p>
<script>
"use strict";
const cards = new Map();

function viewUrl(name) {
  return "/stream/" + encodeURIComponent(name) + ".mjpg?t=" + Date.now();
}

function card(s) {
  if (cards.has(s.name)) return cards.get(s.name);
  const el = document.createElement("section");
  el.className = "card";
  el.dataset.stream = s.name;
  el.innerHTML = '<div class="head"><strong class="name"></strong><span class="badge state"></span></div>' +
    '<div class="warn none"></div><img><div class="stats"></div>';
  const name = el.querySelector(".name");
  name.textContent = s.name;
  name.title = s.source;
  const c = { el: el, img: el.querySelector("img"), ended: false };
  c.img.alt = "live view of " + s.name;
  c.img.addEventListener("error", () => {  // the server restarted or dropped us: try again
    if (!c.ended) setTimeout(() => { c.img.src = viewUrl(s.name); }, 2000);
  });
  c.img.src = viewUrl(s.name);
  document.getElementById("streams").append(el);
  document.getElementById("empty").hidden = true;
  cards.set(s.name, c);
  return c;
}

function num(value, digits, unit) {
  return value === null || value === undefined ? "-" : value.toFixed(digits) + unit;
}

function render(health) {
  const status = document.getElementById("status");
  status.textContent = health.status;
  status.className = "badge " + health.status;
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  for (const s of health.streams) {
    const c = card(s);
    c.ended = s.state === "ended";
    const state = c.el.querySelector(".state");
    state.textContent = s.state;
    state.className = "badge state " + (s.up ? "up" : "down");
    const w = s.warning;
    const warn = c.el.querySelector(".warn");
    warn.className = "warn " + w.level;
    warn.textContent = w.level === "none" ? "no warning" :
      [w.level.toUpperCase(), "track #" + w.track_id, "TTC " + num(w.ttc_s, 1, " s"),
        num(w.dist_m, 0, " m")].join(" \u00b7 ");
    const stats = [
      num(s.fps, 1, " fps"), s.frames + " frames", s.tracks + " tracks",
      "last frame " + num(s.last_frame_age_s, 1, " s ago"),
    ];
    if (s.dropped !== undefined) stats.push(s.dropped + " dropped", s.stale + " stale");
    c.el.querySelector(".stats").textContent = stats.join(" \u00b7 ");
  }
}

async function poll() {
  try {
    const response = await fetch("/health", { cache: "no-store", signal: AbortSignal.timeout(3000) });
    render(await response.json());
  } catch (error) {
    const status = document.getElementById("status");
    status.textContent = "no connection";
    status.className = "badge down";
  }
  setTimeout(poll, 1000);
}
poll();
</script>
</body>
</html>
"""
