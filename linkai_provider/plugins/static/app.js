/* The Transcripts page. Plain DOM, no framework, no dependency: the state lives in the URL
   (?view=search&q=..., ?view=days&dt=..., ?view=run&dag_id=...&run_id=...), so every view can be
   linked to, and Airflow keeps the URL of the page it frames in step. Text from the dataset is
   only ever set as text (textContent), never parsed as HTML. */
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const VIEW = ["search", "days", "run"].includes(params.get("view")) ? params.get("view") : "search";
  const BASE = location.pathname.replace(/\/linkai\/?$/, ""); // Airflow's base path ("" at the root)
  const PRICE_KEY = "linkai.transcripts.pricePerAudioHour";
  const nf = new Intl.NumberFormat();

  // -- look: follow Airflow's light/dark mode -----------------------------------------------------
  function parentDark() {
    try {
      const root = window.parent !== window ? window.parent.document.documentElement : null;
      if (root && (root.classList.contains("dark") || root.classList.contains("light"))) {
        return root.classList.contains("dark");
      }
    } catch (_) { /* not framed by Airflow */ }
    try {
      const saved = localStorage.getItem("theme"); // the UI's own setting (same origin)
      if (saved === "dark" || saved === "light") return saved === "dark";
    } catch (_) { /* storage blocked */ }
    return window.matchMedia("(prefers-color-scheme: dark)").matches;
  }
  function syncTheme() { document.documentElement.classList.toggle("dark", parentDark()); }
  syncTheme();
  try {
    if (window.parent !== window) {
      new MutationObserver(syncTheme).observe(window.parent.document.documentElement, { attributes: true });
    }
  } catch (_) { /* cross-origin parent */ }
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", syncTheme);

  // -- helpers -----------------------------------------------------------------------------------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "style") Object.assign(el.style, v); // CSSOM: allowed by the page's CSP
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  const svg = (tag, attrs) => {
    const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
    return el;
  };
  function clock(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return null;
    const s = Math.floor(seconds);
    const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = String(s % 60).padStart(2, "0");
    return hh ? `${hh}:${String(mm).padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
  }
  const baseName = (uri) => uri.replace(/\/+$/, "").split("/").pop() || uri;
  const hours = (s) => s / 3600;
  function price() {
    const raw = localStorage.getItem(PRICE_KEY);
    const p = raw === null ? 0.36 : Number(raw);
    return isFinite(p) && p >= 0 ? p : 0;
  }
  const money = (v) => "$" + v.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  function href(query) { return "?" + new URLSearchParams(query).toString(); }
  function runHref(dagId, runId) { return href({ view: "run", dag_id: dagId, run_id: runId }); }
  function ago(epoch) {
    if (!epoch) return "";
    const s = Math.max(0, Math.round(Date.now() / 1000 - epoch));
    return s < 60 ? `${s} s ago` : s < 3600 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
  }

  class ApiError extends Error {
    constructor(status, detail) { super(detail); this.status = status; }
  }
  let pending = 0;
  async function api(path, query) {
    const url = new URL(path, location.href);
    for (const [k, v] of Object.entries(query || {})) if (v !== null && v !== undefined && v !== "") url.searchParams.set(k, v);
    pending += 1;
    const slow = setTimeout(showLoading, 350);
    try {
      const res = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      const body = await res.json().catch(() => ({}));
      if (!res.ok) {
        const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || res.statusText);
        throw new ApiError(res.status, detail);
      }
      return body;
    } finally {
      clearTimeout(slow);
      pending -= 1;
      if (!pending) $("loading").hidden = true;
    }
  }
  let loadingSince = 0;
  function showLoading() {
    loadingSince = Date.now();
    $("loading").hidden = false;
    $("loading-text").textContent = "Loading…";
    setTimeout(() => {
      if (pending && Date.now() - loadingSince >= 2500) {
        $("loading-text").textContent =
          "Reading the dataset. The first look after the api-server starts reads every part; later ones only what is new.";
      }
    }, 2600);
  }
  function notice(err) {
    const box = $("notice");
    box.replaceChildren();
    box.className = "notice";
    if (err instanceof ApiError && err.status === 401) {
      box.append(h("b", {}, "Your Airflow session has ended. "),
        h("a", { href: BASE + "/", target: "_top" }, "Log in again"), " to see transcripts.");
    } else if (err instanceof ApiError && err.status === 403) {
      box.append(h("b", {}, "Not allowed. "), err.message);
    } else if (err instanceof ApiError && err.status === 503) {
      box.append(h("b", {}, "The transcript dataset cannot be read. "), err.message);
    } else {
      box.append(h("b", {}, "Something went wrong. "), err.message || String(err));
    }
    box.hidden = false;
  }

  // -- header ------------------------------------------------------------------------------------
  function header() {
    for (const a of document.querySelectorAll(".tabs a")) {
      if (a.dataset.view === VIEW) a.setAttribute("aria-current", "page");
    }
    if (VIEW === "run") {
      const tab = $("run-tab");
      tab.hidden = false;
      tab.href = location.search;
    }
    api("api/status").then((s) => {
      $("dataset").textContent = `${s.dataset} · read ${ago(s.refreshed_at)}`;
      $("dataset").title = "The dataset set in [linkai] transcripts_url. New parts show within " +
        `${s.refresh_seconds} s.`;
    }).catch(() => {});
  }

  // -- search ------------------------------------------------------------------------------------
  function highlight(text, phrase) {
    const lower = text.toLowerCase(), needle = phrase.toLowerCase();
    if (!needle || lower.length !== text.length) return [text];
    const out = [];
    let at = 0;
    for (let i = lower.indexOf(needle); i >= 0; i = lower.indexOf(needle, i + needle.length)) {
      out.push(text.slice(at, i), h("mark", {}, text.slice(i, i + needle.length)));
      at = i + needle.length;
    }
    out.push(text.slice(at));
    return out;
  }
  function resultItem(m, phrase) {
    // the piece of the recording the phrase was said in (a file sent whole is one piece)
    const span = clock(m.start_s) && (clock(m.end_s) ? `${clock(m.start_s)}–${clock(m.end_s)}` : `from ${clock(m.start_s)}`);
    return h("li", { class: "result" },
      h("div", { class: "row1" },
        h("span", { class: "name" }, baseName(m.source_uri)),
        h("span", { class: "meta" },
          span && h("span", { class: "badge time", title: "said in this part of the recording (minute:second)" }, span),
          m.channel !== null && m.channel !== undefined && h("span", { class: "badge", title: "transcribed per channel" }, `channel ${m.channel}`),
          h("span", { class: "badge " + (m.status === "ok" ? "ok" : "failed") }, m.status),
          h("span", { class: "badge", title: "day (dt partition)" }, m.dt))),
      h("div", { class: "uri" }, m.source_uri),
      h("p", { class: "snippet" }, highlight(m.snippet, phrase)),
      h("div", { class: "foot" },
        m.run_id && h("a", { href: runHref(m.dag_id, m.run_id) }, "the run's transcripts"),
        m.dag_id && h("span", {}, m.dag_id),
        h("span", {}, "transcribed " + m.transcribed_at.replace("T", " ").replace("Z", " UTC"))));
  }
  async function searchView() {
    const q = (params.get("q") || "").trim();
    $("q").value = q;
    if (!q) { $("q").focus(); return; }
    let offset = 0;
    const more = $("search-more");
    async function page() {
      const data = await api("api/search", { q, limit: 20, offset });
      if (offset === 0) {
        $("search-summary").textContent = data.total
          ? `${nf.format(data.total)} file${data.total === 1 ? "" : "s"} whose current transcript says “${q}”, newest first`
          : `No current transcript says “${q}”.`;
      }
      $("results").append(...data.matches.map((m) => resultItem(m, q)));
      offset = data.next || 0;
      more.hidden = !data.next;
    }
    more.addEventListener("click", () => page().catch(notice));
    await page();
  }

  // -- days --------------------------------------------------------------------------------------
  const dayState = { days: [], selected: params.get("dt"), total: 0, next: null };
  function nice(v) { // the smallest 1-2-2.5-5 x 10^n at or above v
    const p = Math.pow(10, Math.floor(Math.log10(Math.max(v, 1e-9))));
    return [1, 2, 2.5, 5, 10].map((m) => m * p).find((n) => n >= v);
  }
  function chart() {
    const box = $("chart");
    box.replaceChildren();
    const days = dayState.days.slice(0, 60).reverse(); // oldest on the left
    if (!days.length) { box.append(h("p", { class: "empty" }, "No transcripts yet.")); return; }
    // Two panels on one time axis: files (ok and failed stacked) above, audio hours billed below.
    const W = Math.max(box.clientWidth, 320), H = box.clientHeight || 260, L = 52, R = 16, T = 8, B = 22, GAP = 18;
    const filesH = Math.round((H - T - B - GAP) * 0.68), hoursTop = T + filesH + GAP, hoursH = H - B - hoursTop;
    const maxFiles = nice(Math.max(1, ...days.map((d) => d.files)));
    const maxHours = nice(Math.max(0.01, ...days.map((d) => hours(d.audio_seconds_billed))));
    const step = (W - L - R) / days.length, bw = Math.max(2, Math.min(26, step * 0.66));
    const y = (v) => T + filesH * (1 - v / maxFiles), yh = (v) => hoursTop + hoursH * (1 - v / maxHours);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none" });
    const axis = svg("g", { class: "axis" });
    const label = (x, yy, text, anchor) => {
      const t = svg("text", { x, y: yy, "text-anchor": anchor || "end" });
      t.textContent = text;
      axis.append(t);
    };
    for (let i = 0; i <= 4; i++) {
      const v = (maxFiles * i) / 4;
      axis.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      label(L - 6, y(v) + 4, nf.format(v));
    }
    for (let i = 0; i <= 2; i++) {
      const v = (maxHours * i) / 2;
      axis.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: yh(v), y2: yh(v) }));
      label(L - 6, yh(v) + 4, `${nf.format(v)} h`);
    }
    const every = Math.ceil(days.length / Math.max(1, Math.floor((W - L - R) / 64)));
    days.forEach((d, i) => {
      if ((days.length - 1 - i) % every) return; // the newest day always labelled
      label(L + step * (i + 0.5), H - 6, d.dt.length === 10 ? d.dt.slice(5) : d.dt, "middle");
    });
    root.append(axis);
    days.forEach((d, i) => {
      const cx = L + step * (i + 0.5), x = cx - bw / 2, hrs = hours(d.audio_seconds_billed);
      const hit = svg("rect", {
        class: "hit" + (d.dt === dayState.selected ? " selected" : ""),
        x: L + step * i, y: T, width: step, height: H - T - B, "data-dt": d.dt,
      });
      root.append(hit);
      if (d.ok) root.append(svg("rect", { class: "bar-ok", x, width: bw, y: y(d.ok), height: y(0) - y(d.ok), rx: 1.5 }));
      if (d.failed) {
        const top = y(d.ok + d.failed), h0 = Math.max(2, y(d.ok) - top); // a failure is always visible
        root.append(svg("rect", { class: "bar-failed", x, width: bw, y: y(d.ok) - h0, height: h0, rx: 1.5 }));
      }
      if (hrs) root.append(svg("rect", { class: "bar-hours", x, width: bw, y: yh(hrs), height: yh(0) - yh(hrs), rx: 1.5 }));
      hit.addEventListener("click", () => selectDay(d.dt).catch(notice));
      hit.addEventListener("mouseenter", () => tip(d, cx, y(d.files), W, H));
      hit.addEventListener("mouseleave", untip);
    });
    box.append(root);
  }
  let tipEl = null;
  function tip(d, x, yTop, W, H) {
    untip();
    const box = $("chart");
    const scale = box.clientWidth / W;
    const hrs = hours(d.audio_seconds_billed);
    tipEl = h("div", { class: "tip" },
      h("b", {}, d.dt), h("br"),
      `${nf.format(d.files)} files · ${nf.format(d.ok)} ok · ${nf.format(d.failed)} failed`, h("br"),
      `${hrs.toFixed(2)} audio h billed · ${money(hrs * price())}`);
    tipEl.style.left = `${x * scale}px`;
    tipEl.style.top = `${Math.max(0, (yTop * box.clientHeight) / H - 8)}px`;
    box.append(tipEl);
  }
  function untip() { if (tipEl) tipEl.remove(); tipEl = null; }
  function table() {
    const body = $("days-table").querySelector("tbody");
    body.replaceChildren(...dayState.days.map((d) => {
      const hrs = hours(d.audio_seconds_billed);
      const pick = () => selectDay(d.dt).catch(notice);
      return h("tr", {
        class: d.dt === dayState.selected ? "selected" : null, "data-dt": d.dt, tabindex: "0",
        onclick: pick, onkeydown: (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); pick(); } },
      },
        h("td", {}, d.dt), h("td", { class: "num" }, nf.format(d.files)), h("td", { class: "num" }, nf.format(d.ok)),
        h("td", { class: "num failed-count" + (d.failed ? " some" : "") }, nf.format(d.failed)),
        h("td", { class: "num" }, hrs.toFixed(2)), h("td", { class: "num" }, money(hrs * price())));
    }));
    const totalH = dayState.days.reduce((a, d) => a + hours(d.audio_seconds_billed), 0);
    $("days-summary").textContent = `${dayState.days.length} of ${dayState.total} days: ${totalH.toFixed(1)} audio hours billed, ` +
      `${money(totalH * price())} at ${money(price())} per hour. Files count on the day of their latest row.`;
    $("days-more").hidden = !dayState.next;
  }
  async function loadDays() {
    const data = await api("api/days", { limit: 60, offset: dayState.days.length });
    dayState.days.push(...data.days);
    dayState.total = data.total;
    dayState.next = data.next;
    chart();
    table();
  }
  async function selectDay(dt) {
    dayState.selected = dt;
    history.replaceState(null, "", href({ view: "days", dt }));
    chart();
    table();
    const data = await api(`api/days/${encodeURIComponent(dt)}/failures`, { examples: 3 });
    $("failures-title").textContent = `Failure reasons on ${dt}`;
    const since = data.recovered ? `; ${nf.format(data.recovered)} file${data.recovered === 1 ? "" : "s"} that failed that day succeeded later` : "";
    $("failures-summary").textContent = data.failed
      ? `${nf.format(data.failed)} file${data.failed === 1 ? "" : "s"} still failing${since}.`
      : `No file of this day is failing${since}.`;
    const max = Math.max(1, ...data.reasons.map((r) => r.files));
    $("reasons").replaceChildren(...data.reasons.map((r) => h("li", { class: "reason" },
      h("div", { class: "row1" },
        h("span", { class: "type" }, r.error_type),
        r.error_code !== null && h("span", { class: "badge failed" }, String(r.error_code)),
        h("span", { class: "count" }, `${nf.format(r.files)} file${r.files === 1 ? "" : "s"}`)),
      h("div", { class: "bar" }, h("span", { style: { width: `${(100 * r.files) / max}%` } })),
      h("ul", { class: "examples" }, r.examples.map((e) => h("li", {},
        e.run_id ? h("a", { href: runHref(e.dag_id, e.run_id), title: e.source_uri }, baseName(e.source_uri)) : h("span", { title: e.source_uri }, baseName(e.source_uri)),
        ": ", h("span", { class: "msg" }, e.error_message || "(no message)")))))));
  }
  async function daysView() {
    const input = $("price");
    input.value = price().toFixed(2);
    input.addEventListener("input", () => {
      if (input.value !== "" && Number(input.value) >= 0) localStorage.setItem(PRICE_KEY, input.value);
      table();
    });
    $("days-more").addEventListener("click", () => loadDays().catch(notice));
    let resize = null;
    window.addEventListener("resize", () => { clearTimeout(resize); resize = setTimeout(chart, 100); });
    await loadDays();
    const pick = dayState.selected || (dayState.days.find((d) => d.failed) || dayState.days[0] || {}).dt;
    if (pick) await selectDay(pick);
  }

  // -- a run's transcripts -----------------------------------------------------------------------
  function fileItem(f) {
    const failed = f.status !== "ok";
    const text = f.text || "";
    const body = h("p", { class: "text clamped" }, text);
    const toggle = text.length > 280 && h("button", {
      class: "toggle", type: "button",
      onclick: (ev) => { const c = body.classList.toggle("clamped"); ev.target.textContent = c ? "Show all" : "Show less"; },
    }, "Show all");
    return h("li", { class: "file" },
      h("div", { class: "row1" },
        h("span", { class: "name" }, baseName(f.source_uri)),
        h("span", { class: "meta" },
          f.audio_duration_s !== null && h("span", { class: "badge", title: "duration" }, clock(f.audio_duration_s)),
          f.chunks > 1 && h("span", { class: "badge", title: "sent as pieces" }, `${f.chunks} pieces`),
          !f.current && h("span", { class: "badge", title: "a later row of this file exists (another run)" }, "superseded"),
          h("span", { class: "badge " + (failed ? "failed" : "ok") }, f.status),
          h("span", { class: "badge", title: "day (dt partition)" }, f.dt))),
      h("div", { class: "uri" }, f.source_uri),
      failed
        ? h("div", { class: "error" }, h("b", {}, f.error_type || "error"), f.error_code !== null ? ` (${f.error_code})` : "", ": ", f.error_message || "")
        : [text ? body : h("p", { class: "text muted" }, "(no speech)"), toggle],
      (f.warnings || []).map((w) => h("p", { class: "small muted" }, "⚠ " + w)),
      h("div", { class: "foot" },
        h("span", {}, `task ${f.task_id}${f.map_index >= 0 ? `[${f.map_index}]` : ""}, try ${f.try_number}`),
        f.attempts > 1 && h("span", {}, `${f.attempts} attempts`),
        h("span", {}, "transcribed " + f.transcribed_at.replace("T", " ").replace("Z", " UTC"))));
  }
  async function runView() {
    const dagId = params.get("dag_id") || "", runId = params.get("run_id") || "";
    const status = ["ok", "failed"].includes(params.get("status")) ? params.get("status") : "";
    if (!dagId || !runId) throw new Error("Open a run from a transcribe task's “Transcripts” button.");
    $("run-title").textContent = runId;
    const dagLink = h("a", { href: `${BASE}/dags/${encodeURIComponent(dagId)}/runs/${encodeURIComponent(runId)}`, target: "_top" }, dagId);
    $("run-dag").replaceChildren("DAG ", dagLink, " · every file this run wrote a row for, failed first");
    for (const a of document.querySelectorAll(".filters a")) {
      a.href = href({ view: "run", dag_id: dagId, run_id: runId, ...(a.dataset.status ? { status: a.dataset.status } : {}) });
      if (a.dataset.status === status) a.setAttribute("aria-current", "true");
    }
    let offset = 0;
    const more = $("run-more");
    async function page() {
      const data = await api(`api/runs/${encodeURIComponent(dagId)}/${encodeURIComponent(runId)}`, { status, limit: 50, offset });
      $("count-all").textContent = nf.format(data.total);
      $("count-failed").textContent = nf.format(data.failed);
      $("count-ok").textContent = nf.format(data.ok);
      if (!data.total && offset === 0) {
        $("files").append(h("li", { class: "empty" }, "This run wrote no transcript rows (every file was already done, or the task has not finished)."));
      }
      $("files").append(...data.files.map(fileItem));
      offset = data.next || 0;
      more.hidden = !data.next;
    }
    more.addEventListener("click", () => page().catch(notice));
    await page();
  }

  // -- start -------------------------------------------------------------------------------------
  header();
  $(`view-${VIEW}`).hidden = false;
  const views = { search: searchView, days: daysView, run: runView };
  views[VIEW]().catch(notice);
})();
