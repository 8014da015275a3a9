// vitkit serve's page: send each dropped or picked file to POST /v1/predict (explain=true) and show the answer.
// Plain JavaScript, no framework, nothing loaded from elsewhere. Text from the server or from file names is only
// ever set with textContent, never parsed as HTML.
"use strict";

const TOP_K = 5;
const state = { token: sessionStorage.getItem("vitkit-token") || "", task: "image" };

function headers() {
  return state.token ? { Authorization: "Bearer " + state.token } : {};
}

async function loadModel() {
  const info = document.getElementById("model");
  let response;
  try {
    response = await fetch("/v1/model", { headers: headers() });
  } catch (error) {
    info.textContent = "cannot reach the server: " + error.message;
    return;
  }
  if (response.status === 401) {
    document.getElementById("token-box").hidden = false;
    info.textContent = "enter the server's token to continue";
    return;
  }
  const model = await response.json();
  if (!response.ok) {
    info.textContent = model.error || "the server answered " + response.status;
    return;
  }
  document.getElementById("token-box").hidden = true;
  state.task = model.task;
  const size = model.input_size.join(" x ");
  info.textContent = `${model.name}: ${model.task} classifier, ${model.classes.length} classes, input ${size}` +
    (model.task === "video" ? " (frames x px x px)" : " px") + (model.int8 ? ", int8" : "");
  document.getElementById("class-list").textContent = model.classes.join(", ");
  document.querySelector("#classes summary").textContent = `${model.classes.length} classes`;
  document.querySelector("#drop strong").textContent = model.task === "video" ? "Drop videos here" : "Drop images here";
  document.getElementById("pick").accept = model.task === "video" ? "video/*," + model.accepts.join(",")
                                                                   : "image/*," + model.accepts.join(",");
}

function newCard(file) {
  const card = document.getElementById("card").content.firstElementChild.cloneNode(true);
  card.querySelector(".name").textContent = file.name;
  if (state.task === "video") {
    card.classList.add("video");
  } else if (file.type.startsWith("image/")) {
    card.querySelector(".picture").src = URL.createObjectURL(file);  // a preview until the answer comes
  }
  document.getElementById("results").prepend(card);
  return card;
}

function showError(card, message) {
  card.classList.add("failed");
  card.querySelector(".status").hidden = true;
  const error = card.querySelector(".error");
  error.hidden = false;
  error.textContent = message;
}

function showResult(card, result) {
  card.querySelector(".status").hidden = true;
  const bars = card.querySelector(".bars");
  for (const [rank, prediction] of result.predictions.entries()) {
    const item = document.createElement("li");
    const label = document.createElement("span");
    label.className = rank === 0 ? "label top-class" : "label";
    label.textContent = prediction.class;
    const value = document.createElement("span");
    value.className = "probability";
    value.textContent = (100 * prediction.probability).toFixed(1) + "%";
    const track = document.createElement("div");
    track.className = "track";
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = (100 * prediction.probability).toFixed(2) + "%";
    track.append(fill);
    item.append(label, value, track);
    bars.append(item);
  }
  if (result.overlay) {
    const picture = card.querySelector(".picture");
    const toggle = card.querySelector(".toggle");
    const box = toggle.querySelector("input");
    const show = () => {
      picture.src = box.checked ? result.overlay : result.image;
      picture.alt = (box.checked ? "attention rollout over " : "") + result.file;
      picture.classList.toggle("overlay", box.checked);
    };
    box.addEventListener("change", show);
    toggle.hidden = false;
    show();
  }
}

async function classify(file) {
  const card = newCard(file);
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    const response = await fetch(`/v1/predict?top_k=${TOP_K}&explain=true`, {
      method: "POST", body: form, headers: headers(),
    });
    const answer = await response.json().catch(() => ({ error: "the server answered " + response.status }));
    if (!response.ok) {
      showError(card, answer.error || "the server answered " + response.status);
    } else {
      showResult(card, answer.results[0]);
    }
  } catch (error) {
    showError(card, "request failed: " + error.message);
  }
}

function classifyAll(files) {
  for (const file of files) classify(file);  // in parallel: the server batches them
}

document.addEventListener("DOMContentLoaded", () => {
  const drop = document.getElementById("drop");
  const pick = document.getElementById("pick");
  pick.addEventListener("change", () => { classifyAll(pick.files); pick.value = ""; });
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (event) => { event.preventDefault(); classifyAll(event.dataTransfer.files); });
  document.getElementById("token-box").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = document.getElementById("token").value.trim();
    sessionStorage.setItem("vitkit-token", state.token);
    loadModel();
  });
  loadModel();
});
