// django-atw admin extras, beside live.js (whose atw:task events they follow):
//   data-atw-copy="TEXT"          a button that copies TEXT (a task's full id) to the clipboard
//   data-atw-duration="ID"        with data-atw-started (ISO) and data-atw-running="1": counts up
//                                 each second while the task runs, fixed once it ends
//   <progress data-atw-task-id>   class atw-progress-<status>, so a failed bar is coloured as failed

const TERMINAL = new Set(["completed", "failed", "cancelled"]);

function formatDuration(seconds) {
  if (seconds < 60) return `${Math.max(seconds, 0).toFixed(2)} s`;
  const total = Math.round(seconds);
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const secs = total % 60;
  return `${hours}:${String(minutes).padStart(2, "0")}:${String(secs).padStart(2, "0")}`;
}

function tick() {
  const now = Date.now();
  for (const element of document.querySelectorAll("[data-atw-duration][data-atw-running='1']")) {
    const started = Date.parse(element.dataset.atwStarted || "");
    if (!Number.isNaN(started)) element.textContent = formatDuration((now - started) / 1000);
  }
}

function taskChanged(task) {
  for (const element of document.querySelectorAll("[data-atw-duration]")) {
    if (element.dataset.atwDuration !== task.id) continue;
    if (task.started_at) element.dataset.atwStarted = task.started_at;
    if (task.status === "running") {
      element.dataset.atwRunning = "1";
    } else {
      element.dataset.atwRunning = "";
      if (TERMINAL.has(task.status) && task.started_at && task.completed_at) {
        element.textContent = formatDuration((Date.parse(task.completed_at) - Date.parse(task.started_at)) / 1000);
      }
    }
  }
  for (const bar of document.querySelectorAll("progress[data-atw-task-id]")) {
    if (bar.dataset.atwTaskId !== task.id) continue;
    for (const name of [...bar.classList]) {
      if (name.startsWith("atw-progress-")) bar.classList.remove(name);
    }
    bar.classList.add(`atw-progress-${task.status}`);
  }
  tick();
}

async function copy(button) {
  const text = button.dataset.atwCopy || "";
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // No clipboard API (a page served over plain HTTP from another host): select a copy instead.
    const field = document.createElement("textarea");
    field.value = text;
    document.body.append(field);
    field.select();
    document.execCommand("copy");
    field.remove();
  }
  button.classList.add("atw-copied");
  button.title = "Copied";
  setTimeout(() => {
    button.classList.remove("atw-copied");
    button.title = "Copy the full id";
  }, 1200);
}

document.addEventListener("click", (event) => {
  const button = event.target instanceof Element ? event.target.closest("[data-atw-copy]") : null;
  if (!button) return;
  event.preventDefault();
  copy(button);
});
document.addEventListener("atw:task", (event) => taskChanged(event.detail));
setInterval(tick, 1000);
tick();
