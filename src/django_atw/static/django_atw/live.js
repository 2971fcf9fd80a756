// django-atw live task updates: one WebSocket per page, bound to elements by data attributes.
//
//   <script type="module" src="{% static 'django_atw/live.js' %}"></script>
//
// Bindings (the value is a task id; elements added later are bound too):
//   <progress data-atw-task-id="ID">       value = progress (scaled to its max)
//   data-atw-progress="ID"                  style.width = progress in %
//   data-atw-percent="ID"                   text = "42%"
//   data-atw-status="ID"                    text = status, class atw-status-<status>
//   data-atw-result="ID"                    text = the result as JSON, or the error
//   data-atw-cancel="ID"                    a button that cancels the task; disabled once it finished
//   data-atw-list='{"status": "running"}'   subscribe to a task list; atw:task events on the container
// Events: atw:task on document (every task), atw:connection ({state: "open" | "closed"}),
// atw:cancel (the server's reply), atw:error (an error frame). <body data-atw-connection> holds the state.
// <body data-atw-socket="/path/"> overrides the socket path (default /ws/atw/tasks/).

const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const KINDS = ["task-id", "progress", "percent", "status", "result", "cancel"];
const SELECTOR = KINDS.map((kind) => `[data-atw-${kind}]`).join(",");
const REFUSED = new Set([4401, 4403]); // the server will not accept this user: do not retry
const BACKOFF_FIRST = 500;
const BACKOFF_MAX = 15000;

function attr(kind) {
  return `data-atw-${kind}`;
}

function socketUrl() {
  const path = document.body.getAttribute(attr("socket")) || "/ws/atw/tasks/";
  if (/^wss?:\/\//.test(path)) return path;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path.startsWith("/") ? path : `/${path}`}`;
}

function resultText(task) {
  if (task.status === "completed") {
    return task.result_truncated ? "(result too large to show)" : JSON.stringify(task.result ?? null);
  }
  return task.error ?? "";
}

/** Write one task's state into one bound element. */
function render(element, task) {
  if (element.hasAttribute(attr("task-id")) && element instanceof HTMLProgressElement) {
    element.value = task.progress * (element.max || 1);
  }
  const percent = `${Math.round(task.progress * 100)}%`;
  if (element.hasAttribute(attr("progress"))) element.style.width = percent;
  if (element.hasAttribute(attr("percent"))) element.textContent = percent;
  if (element.hasAttribute(attr("status"))) {
    for (const name of [...element.classList]) {
      if (name.startsWith("atw-status-")) element.classList.remove(name);
    }
    element.classList.add(`atw-status-${task.status}`);
    element.textContent = task.status;
  }
  if (element.hasAttribute(attr("result"))) element.textContent = resultText(task);
  if (element.hasAttribute(attr("cancel")) && TERMINAL.has(task.status)) element.disabled = true;
}

/** Every task id an element is bound to (one element may carry several bindings). */
function idsOf(element) {
  const ids = new Set();
  for (const kind of KINDS) {
    const id = element.getAttribute(attr(kind));
    if (id) ids.add(id);
  }
  return ids;
}

function parseFilters(container) {
  try {
    const filters = JSON.parse(container.getAttribute(attr("list")) || "{}");
    return filters && typeof filters === "object" ? filters : {};
  } catch {
    console.warn("django-atw: data-atw-list is not a JSON object", container);
    return {};
  }
}

class LiveTasks {
  constructor() {
    this.tasks = new Map(); // id -> newest known task
    this.subscribed = new Set(); // ids the server was asked for on this socket
    this.lists = new Map(); // container -> {filters, ids}
    this.socket = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.pending = null; // a scheduled subscription flush
  }

  start() {
    this.scan(document.body);
    new MutationObserver((records) => this.mutated(records)).observe(document.body, {
      childList: true,
      subtree: true,
      attributes: true,
      attributeFilter: [...KINDS, "list"].map(attr),
    });
    document.addEventListener("click", (event) => this.clicked(event));
    this.connect();
  }

  // -- the socket ---------------------------------------------------------------------------------

  connect() {
    clearTimeout(this.retryTimer);
    const socket = new WebSocket(socketUrl());
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.attempt = 0;
      this.subscribed.clear();
      this.setState("open");
      this.resubscribe();
    });
    socket.addEventListener("message", (event) => this.received(event.data));
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.setState("closed", event.code);
      if (!REFUSED.has(event.code)) this.retry();
    });
  }

  retry() {
    // Exponential backoff with full jitter, capped, so that a restarted server is not stampeded.
    const ceiling = Math.min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** this.attempt);
    this.attempt += 1;
    this.retryTimer = setTimeout(() => this.connect(), ceiling / 2 + Math.random() * (ceiling / 2));
  }

  setState(state, code) {
    document.body.setAttribute(attr("connection"), state);
    document.dispatchEvent(new CustomEvent("atw:connection", { detail: { state, code } }));
  }

  send(message) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  received(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      console.warn("django-atw: a frame that is not JSON", data);
      return;
    }
    if (message.type === "snapshot") {
      for (const task of message.tasks) this.update(task, message.list ? message.ref : undefined);
    } else if (message.type === "task") {
      this.update(message.task);
    } else if (message.type === "tasks") {
      for (const task of message.tasks) this.update(task);
    } else if (message.type === "resync") {
      // The server lost its channel layer for a while (a Redis restart): events may be missing.
      this.subscribed.clear();
      this.resubscribe();
    } else if (message.type === "cancel") {
      this.cancelAnswered(message);
    } else if (message.type === "error") {
      console.warn(`django-atw: ${message.code}: ${message.message}`);
      document.dispatchEvent(new CustomEvent("atw:error", { detail: message }));
    }
  }

  // -- subscriptions ------------------------------------------------------------------------------

  /** After (re)connecting: ask again for every bound task and every list, for a fresh snapshot. */
  resubscribe() {
    this.flush();
    for (const [container, list] of this.lists) this.subscribeList(container, list);
  }

  subscribeList(container, list) {
    // One list per socket in the protocol: the last container's filters win.
    this.send({ action: "subscribe", list: list.filters, ref: `list:${list.key}` });
  }

  /** Subscribe, in one frame, to the bound ids the server was not asked for yet. */
  schedule() {
    if (this.pending) return;
    this.pending = Promise.resolve().then(() => {
      this.pending = null;
      this.flush();
    });
  }

  flush() {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return;
    const wanted = new Set();
    for (const element of document.querySelectorAll(SELECTOR)) {
      for (const id of idsOf(element)) wanted.add(id);
    }
    const added = [...wanted].filter((id) => !this.subscribed.has(id));
    const gone = [...this.subscribed].filter((id) => !wanted.has(id) && !this.listed(id));
    if (added.length && this.send({ action: "subscribe", tasks: added })) {
      for (const id of added) this.subscribed.add(id);
    }
    if (gone.length && this.send({ action: "unsubscribe", tasks: gone })) {
      for (const id of gone) this.subscribed.delete(id);
    }
  }

  listed(id) {
    for (const list of this.lists.values()) if (list.ids.has(id)) return true;
    return false;
  }

  // -- binding ------------------------------------------------------------------------------------

  scan(root) {
    if (!(root instanceof Element)) return;
    const elements = root.matches(SELECTOR) ? [root] : [];
    elements.push(...root.querySelectorAll(SELECTOR));
    for (const element of elements) {
      for (const id of idsOf(element)) {
        const task = this.tasks.get(id);
        if (task) render(element, task);
      }
    }
    const containers = root.matches(`[${attr("list")}]`) ? [root] : [];
    containers.push(...root.querySelectorAll(`[${attr("list")}]`));
    for (const container of containers) this.addList(container);
    if (elements.length) this.schedule();
  }

  addList(container) {
    const filters = parseFilters(container);
    const key = JSON.stringify(filters);
    const known = this.lists.get(container);
    if (known && known.key === key) return;
    const list = { filters, key, ids: new Set() };
    this.lists.set(container, list);
    this.subscribeList(container, list);
  }

  mutated(records) {
    let removed = false;
    for (const record of records) {
      if (record.type === "attributes") {
        if (record.attributeName === attr("list")) this.addList(record.target);
        else this.scan(record.target);
        continue;
      }
      for (const node of record.addedNodes) this.scan(node);
      if (record.removedNodes.length) removed = true;
    }
    if (removed) {
      const before = this.lists.size;
      for (const container of [...this.lists.keys()]) {
        if (!container.isConnected) this.lists.delete(container);
      }
      // Nothing on the page lists tasks any more.
      if (before && !this.lists.size) this.send({ action: "unsubscribe", list: true });
      this.schedule();
    }
  }

  // -- task state ---------------------------------------------------------------------------------

  update(task, listRef) {
    this.tasks.set(task.id, task);
    for (const element of document.querySelectorAll(SELECTOR)) {
      if (idsOf(element).has(task.id)) render(element, task);
    }
    for (const [container, list] of this.lists) {
      if (list.ids.has(task.id) || listRef === `list:${list.key}` || matches(task, list.filters)) {
        list.ids.add(task.id);
        container.dispatchEvent(new CustomEvent("atw:task", { detail: task }));
      }
    }
    document.dispatchEvent(new CustomEvent("atw:task", { detail: task }));
  }

  clicked(event) {
    const button = event.target instanceof Element ? event.target.closest(`[${attr("cancel")}]`) : null;
    if (!button || button.disabled) return;
    const id = button.getAttribute(attr("cancel"));
    // Without a socket the click does what it does without this module (e.g. submits its form).
    if (!this.send({ action: "cancel", task: id, ref: `cancel:${id}` })) return;
    event.preventDefault();
    button.disabled = true;
  }

  cancelAnswered(message) {
    const task = this.tasks.get(message.task);
    if (!message.cancelled && !(task && TERMINAL.has(task.status))) {
      for (const button of document.querySelectorAll(`[${attr("cancel")}]`)) {
        if (button.getAttribute(attr("cancel")) === message.task) button.disabled = false;
      }
    }
    document.dispatchEvent(new CustomEvent("atw:cancel", { detail: message }));
  }
}

/** Whether a task matches a list's filters, as far as the browser can tell ("mine" it cannot). */
function matches(task, filters) {
  for (const key of ["status", "task_type", "queue"]) {
    if (filters[key] !== undefined && filters[key] !== null && task[key] !== filters[key]) return false;
  }
  return true;
}

function boot() {
  if (window.djangoAtwLive) return;
  window.djangoAtwLive = new LiveTasks();
  window.djangoAtwLive.start();
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", boot, { once: true });
} else {
  boot();
}
