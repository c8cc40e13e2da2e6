// The edge-llama chat page: plain DOM, no build step. The server keeps the history and the chat
// template; this page only sends turns, shows the streamed text and the status line of each answer.
"use strict";

const $ = (id) => document.getElementById(id);
const view = $("conversation"), promptBox = $("prompt"), sendButton = $("send"), stopButton = $("stop");
let conversation = null, generating = false, turnDone = Promise.resolve();

async function api(path, body) {
  const options = body === undefined ? {} : {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
  const response = await fetch(path, options);
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON: keep the status */ }
    throw new Error(message);
  }
  return response;
}

function addMessage(kind, text) {
  const message = document.createElement("div");
  message.className = `message ${kind}`;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  message.append(body);
  view.append(message);
  message.scrollIntoView({block: "end"});
  return message;
}

function showError(message, text) {
  message.className = "message error";
  message.querySelector(".text").textContent = text;
}

function setGenerating(on) {
  generating = on;
  sendButton.disabled = on;
  stopButton.disabled = !on;
}

// Model line; polls while a checkpoint is loading.
async function refreshInfo() {
  const line = $("model-line");
  let info;
  try { info = await (await api("/api/info")).json(); } catch (error) { line.textContent = `server unreachable: ${error.message}`; return null; }
  $("load-form").hidden = !info.allow_load;
  line.classList.toggle("error", info.state === "failed");
  if (info.state === "ready") {
    line.textContent = `${info.checkpoint} · ${info.num_layers} layers · CL ${info.context_length} · AR ${info.ar_lengths.join("/")} · ${info.backend}`;
  } else if (info.state === "failed") {
    line.textContent = info.error;
  } else {
    line.textContent = `loading ${info.checkpoint} …`;
    setTimeout(refreshInfo, 500);
  }
  return info;
}

async function newChat() {
  if (generating) { await stop(); await turnDone; }  // the server takes one answer at a time
  try {
    const fresh = (await (await api("/api/conversations", {})).json()).conversation;
    view.replaceChildren();
    conversation = fresh;
  } catch (error) {
    view.replaceChildren();
    showError(addMessage("error", ""), error.message);
  }
  promptBox.focus();
}

async function stop() {
  try { await api("/api/stop", {conversation}); } catch (error) { showError(addMessage("error", ""), error.message); }
}

function statusLine(s) {
  const parts = [s.backend, `${s.prompt_tokens} prompt tokens`, `${s.output_tokens} new tokens`];
  if (s.seconds_to_first_token !== null) parts.push(`time to first token ${s.seconds_to_first_token.toFixed(2)} s`);
  if (s.tokens_per_second !== null) parts.push(`${s.tokens_per_second.toFixed(1)} tokens/s`);
  parts.push(s.ended);
  return parts.join(" · ");
}

// One turn: POST the prompt, read the server-sent events of the answer as they arrive.
async function send(event) {
  event.preventDefault();
  if (generating) return;
  const prompt = promptBox.value;
  const question = prompt.trim() ? addMessage("user", prompt) : null;
  const answer = addMessage("assistant streaming", "");
  const text = answer.querySelector(".text");
  let endTurn;
  turnDone = new Promise((resolve) => { endTurn = resolve; });
  setGenerating(true);
  try {
    let response;
    try {
      response = await api("/api/chat", {conversation, prompt});
    } catch (error) {
      question?.remove();  // refused: not part of the conversation; the prompt stays in the box
      throw error;
    }
    promptBox.value = "";
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "", finished = false;
    while (!finished) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const kind = (frame.match(/^event: (.*)$/m) || [])[1];
        const data = JSON.parse((frame.match(/^data: (.*)$/m) || [])[1] || "{}");
        if (kind === "token") {
          text.textContent = (text.textContent + data.text).trimStart();
          answer.scrollIntoView({block: "end"});
        } else if (kind === "done") {
          text.textContent = data.text;
          const status = document.createElement("small");
          status.className = "status";
          status.textContent = statusLine(data);
          answer.append(status);
          finished = true;
        } else if (kind === "error") {
          showError(answer, data.error);
          finished = true;
        }
      }
    }
    if (!finished) showError(answer, "the answer stream ended early (server stopped?)");
  } catch (error) {
    showError(answer, error.message);
  } finally {
    answer.classList.remove("streaming");
    setGenerating(false);
    endTurn();
  }
}

async function load(event) {
  event.preventDefault();
  try {
    await api("/api/load", {checkpoint: $("checkpoint-input").value});
  } catch (error) {
    showError(addMessage("error", ""), error.message);
    return;
  }
  await refreshInfo();
  await newChat();
}

$("prompt-form").addEventListener("submit", send);
$("load-form").addEventListener("submit", load);
stopButton.addEventListener("click", stop);
$("new-chat").addEventListener("click", newChat);
promptBox.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); $("prompt-form").requestSubmit(); }
});
refreshInfo();
newChat();
