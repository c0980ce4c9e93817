// The SQL page's console: SQLite (sql.js, WebAssembly inlined in assets/sql-wasm-inline.js) over the site's tables.
// Works from file://: the engine and every table arrive by <script> tag (a page opened from file:// may not fetch),
// a table's script (data/console/<table>.js, written by headwiki.db.tables) only when a query first names it.
// Results are drawn with textContent only. window.headwikiSql exposes run(sql) and the last result (tests read it).
(function () {
  "use strict";
  const state = { engine: null, db: null, loaded: new Set(), pending: new Map(), last: null, readyMs: null };

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = src;
      s.onload = () => resolve();
      s.onerror = () => reject(new Error("could not load " + src));
      document.head.appendChild(s);
    });
  }

  // DuckDB's text form of a list ("[a, b]", an element quoted with ' when it holds a separator) -> its elements.
  function listItems(text) {
    if (text === null || text === undefined) return null;
    const s = String(text);
    if (s[0] !== "[" || s[s.length - 1] !== "]") return null;
    const out = [];
    let cur = "", depth = 0, quoted = false, any = false;
    for (let i = 1; i < s.length - 1; i++) {
      const c = s[i];
      if (quoted) {
        if (c === "\\" && i + 1 < s.length - 1) { cur += s[++i]; continue; }
        if (c === "'") { quoted = false; continue; }
        cur += c; continue;
      }
      if (c === "'" && cur.trim() === "") { quoted = true; any = true; continue; }
      if (c === "[" || c === "{") depth++;
      if (c === "]" || c === "}") depth--;
      if (c === "," && depth === 0) { out.push(cur.trim()); cur = ""; any = false; continue; }
      cur += c;
    }
    if (cur.trim() !== "" || any || out.length) out.push(cur.trim());
    return out;
  }

  // The few DuckDB functions the page's examples use on list columns, so one SQL text runs in both engines.
  function addDuckdbFunctions(db) {
    db.create_function("list_contains", (list, item) => {
      const items = listItems(list);
      return items === null || item === null ? null : (items.includes(String(item)) ? 1 : 0);
    });
    db.create_function("len", (x) => {
      if (x === null) return null;
      const items = listItems(x);
      return items === null ? String(x).length : items.length;
    });
  }

  window.headwikiSqlTable = function (payload) {  // called by each data/console/<table>.js
    const db = state.db;
    const cols = payload.columns.map(([n, t]) => '"' + n.replace(/"/g, '""') + '" ' + t).join(", ");
    const name = '"' + payload.name.replace(/"/g, '""') + '"';
    db.run("CREATE TABLE " + name + " (" + cols + ")");
    const stmt = db.prepare("INSERT INTO " + name + " VALUES (" + payload.columns.map(() => "?").join(", ") + ")");
    db.run("BEGIN");
    for (const row of payload.rows) stmt.run(row);
    db.run("COMMIT");
    stmt.free();
    state.loaded.add(payload.name);
  };

  async function start(root) {
    if (state.db) return;
    const t0 = performance.now();
    await loadScript(root.dataset.engine);
    const SQL = await window.initSqlJs();
    state.engine = SQL;
    state.db = new SQL.Database();
    addDuckdbFunctions(state.db);
    state.readyMs = performance.now() - t0;
  }

  function tablesNamed(sql, available) {
    const words = new Set((sql.match(/[A-Za-z_][A-Za-z0-9_]*/g) || []).map((w) => w.toLowerCase()));
    return Object.keys(available).filter((t) => words.has(t.toLowerCase()));
  }

  async function run(sql, root) {
    root = root || document.getElementById("sql-console");
    await (state.starting || (state.starting = start(root)));
    const available = JSON.parse(root.dataset.tables);
    const t0 = performance.now();
    for (const t of tablesNamed(sql, available)) {
      if (state.loaded.has(t)) continue;
      if (!available[t]) throw new Error("table " + t + " is too large for the console: download its Parquet file, or run the query with `headwiki query`");
      await loadScript(available[t]);
    }
    const results = state.db.exec(sql);
    const last = results.length ? results[results.length - 1] : { columns: [], values: [] };
    state.last = { sql: sql, columns: last.columns, rows: last.values, ms: performance.now() - t0 };
    return state.last;
  }

  const MAX_SHOWN = 1000;

  function show(root, result) {
    const out = root.querySelector(".sql-result");
    out.replaceChildren();
    const table = document.createElement("table");
    const head = table.createTHead().insertRow();
    for (const c of result.columns) { const th = document.createElement("th"); th.textContent = c; head.appendChild(th); }
    const body = table.createTBody();
    for (const row of result.rows.slice(0, MAX_SHOWN)) {
      const tr = body.insertRow();
      for (const v of row) tr.insertCell().textContent = v === null ? "NULL" : String(v);
    }
    const wrap = document.createElement("div");
    wrap.className = "table-wrap";
    wrap.appendChild(table);
    out.appendChild(wrap);
    const n = result.rows.length;
    status(root, n + " row" + (n === 1 ? "" : "s") + (n > MAX_SHOWN ? " (first " + MAX_SHOWN + " shown)" : "") +
      " in " + result.ms.toFixed(0) + " ms", "ok");
  }

  function status(root, text, kind) {
    const s = root.querySelector(".sql-status");
    s.textContent = text;
    s.dataset.state = kind;
  }

  async function submit(root) {
    const sql = root.querySelector("textarea").value;
    status(root, "running…", "running");
    try {
      show(root, await run(sql, root));
    } catch (e) {
      root.querySelector(".sql-result").replaceChildren();
      state.last = { sql: sql, error: String(e && e.message || e) };
      status(root, "error: " + state.last.error, "error");
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const root = document.getElementById("sql-console");
    if (!root) return;
    const area = root.querySelector("textarea");
    root.querySelector(".sql-run").addEventListener("click", () => submit(root));
    area.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); submit(root); }
    });
    for (const b of document.querySelectorAll("button.sql-example")) {
      b.addEventListener("click", () => {
        area.value = b.closest(".sql").querySelector("code.sql-text").textContent;
        root.scrollIntoView({ block: "start" });
        submit(root);
      });
    }
    status(root, "loading SQLite…", "loading");
    (state.starting = start(root)).then(
      () => status(root, "ready: SQLite (sql.js) loaded in " + state.readyMs.toFixed(0) + " ms; Ctrl+Enter runs", "ready"),
      (e) => status(root, "the console could not start: " + e.message, "error"));
  });

  window.headwikiSql = { run: run, state: state, listItems: listItems };
})();
