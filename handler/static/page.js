// The page to try scenes: a caller of the HTTP API like any other. It reads the choices from
// the contract (/openapi.json), submits an async job, polls its status for the progress, and
// shows the result, or the error with the script's line marked. Everything it shows of a job
// (messages, tracebacks, names) comes from the script, so it goes in as text, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const ENDED = ["succeeded", "failed", "cancelled"];
const POLL_MS = 200;

// CodeMirror is Debian's libjs-codemirror, served by the local server; without it, a plain box.
const editor = window.CodeMirror
  ? CodeMirror.fromTextArea($("code"), { mode: "python", lineNumbers: true, indentUnit: 4 })
  : null;
if (!editor) {
  say($("notice"), "The editor (CodeMirror) did not load: install Debian's libjs-codemirror (make serve does). "
    + "You can still type the script here.");
}
let marked = null; // the line marked as the error's, to unmark on the next render

function say(element, text) {
  element.textContent = text;
  element.hidden = !text;
}

function fill(select, values, chosen) {
  for (const value of values) select.add(new Option(value, value, false, value === chosen));
}

async function loadChoices() {
  const contract = await (await fetch("/openapi.json")).json();
  const fields = contract.components.schemas.RenderRequest.properties;
  fill($("quality"), fields.quality.enum, "-ql");
  fill($("format"), fields.format.anyOf.find((type) => type.enum).enum);
}

function markLine(line) {
  if (!editor || !Number.isInteger(line) || line < 1 || line > editor.lineCount()) return;
  marked = editor.addLineClass(line - 1, "wrap", "error-line");
  editor.scrollIntoView({ line: line - 1, ch: 0 });
}

function showError(body) {
  const details = body.errors;
  let text = body.message || "The render failed.";
  if (Array.isArray(details)) text += "\n" + details.map((problem) => `${problem.loc.join(".")}: ${problem.msg}`).join("\n");
  else if (details && details.traceback) text += "\n\n" + details.traceback;
  say($("error"), text);
  if (details && !Array.isArray(details)) markLine(details.line);
}

function showResult(result) {
  const still = result.format === "png" || result.format === "gif";
  const media = document.createElement(still ? "img" : "video");
  media.src = result.url;
  if (!still) Object.assign(media, { controls: true, autoplay: true, muted: true, loop: true });
  const caption = document.createElement("p");
  caption.textContent = `${result.sceneName}: ${result.format}, ${result.width}x${result.height}`
    + `${result.cached ? " (from the cache)" : ""}`;
  $("result").replaceChildren(media, caption);
}

async function json(response) {
  const body = await response.json();
  if (!response.ok) throw Object.assign(new Error(body.message), { body });
  return body;
}

async function finished(jobId) {
  for (;;) {
    const record = await json(await fetch(`/api/render/status/${encodeURIComponent(jobId)}`));
    if (ENDED.includes(record.status)) return record;
    const percent = record.progress ? record.progress.percent : null;
    $("progress").hidden = false;
    if (percent == null) $("progress").removeAttribute("value");
    else $("progress").value = percent;
    say($("status"), percent == null ? record.status : `${record.status} ${percent}%`);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

async function render() {
  const request = { codeContent: editor ? editor.getValue() : $("code").value, quality: $("quality").value, async: true };
  if ($("format").value) request.format = $("format").value;
  $("render").disabled = true;
  say($("status"), "submitting");
  if (marked) editor.removeLineClass(marked, "wrap", "error-line");
  marked = null;
  say($("error"), "");
  $("result").replaceChildren();
  try {
    const accepted = await json(await fetch("/api/render", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request),
    }));
    const record = await finished(accepted.jobId);
    say($("status"), record.status);
    if (record.status === "succeeded") showResult(record.result);
    else if (record.error) showError(record.error);
  } catch (error) {
    say($("status"), "failed");
    showError(error.body || { message: String(error) });
  } finally {
    $("progress").hidden = true;
    $("render").disabled = false;
  }
}

$("render").addEventListener("click", render);
loadChoices().catch((error) => say($("notice"), `Could not read the API's choices from /openapi.json: ${error}`));
