// The example app's whole logic. It never sees a token: the gateway keeps them and gives the
// browser an HttpOnly session cookie, which fetch() sends on same-origin requests by itself.
//
// - who you are: GET /account/me (200 with your claims, 404 without a session);
// - log in: a top-level navigation to /account/login (the gateway sends you to the identity
//   provider and back here);
// - the API: fetch('/api/hello') with the anti-forgery header X-CSRF: 1 (the gateway refuses a
//   call with a session but without it, so another site cannot make one in your name);
// - log out: a same-origin form POST to /account/end-session (a link or a cross-site form cannot
//   log you out);
// - live: a WebSocket to /live/ticks while signed in (the gateway checks the page's Origin, as a
//   WebSocket cannot carry X-CSRF); it reconnects when a node going away closes it (1001).
"use strict";

const CSRF_HEADER = { "X-CSRF": "1" };
const $ = (id) => document.getElementById(id);

// Which gateway node answered (the cluster's load balancer names it in x-bff-node).
function showNode(response) {
  const node = response.headers.get("x-bff-node");
  $("node").textContent = node ? `last answer from ${node}` : "last answer from the gateway";
}

function clearClaims() {
  $("claims").querySelector("tbody").replaceChildren();
  $("claims").hidden = true;
}

// Forget everything about the user on screen: claims and the API's last answer.
function clearUser() {
  clearClaims();
  $("api-body").textContent = "";
  $("api-body").hidden = true;
  $("api-status").textContent = "Not called yet.";
  $("api-status").dataset.state = "idle";
}

// The live panel's socket, while signed in.
let live = null;
let ticks = 0;

function liveState(state, text) {
  $("live-status").dataset.state = state;
  $("live-status").textContent = text;
}

function startLive() {
  if (live) {
    return;
  }
  const socket = new WebSocket(window.location.origin.replace(/^http/, "ws") + "/live/ticks");
  live = socket;
  liveState("connecting", "Connecting…");
  socket.addEventListener("message", () => {
    ticks += 1;
    $("live-count").textContent = String(ticks);
    liveState("live", "Live");
  });
  socket.addEventListener("close", (event) => {
    if (live !== socket) {
      return;
    }
    live = null;
    liveState("closed", `Closed (${event.code}${event.reason ? " " + event.reason : ""})`);
    // Going away (a node restarting) or a dropped connection: connect again, to another node.
    if (event.code !== 1008 && $("status").dataset.state === "signed-in") {
      setTimeout(startLive, 500);
    }
  });
}

function stopLive() {
  const socket = live;
  live = null;
  if (socket) {
    socket.close();
    liveState("closed", "Closed");
  }
}

function showSignedOut(text) {
  stopLive();
  clearClaims();
  $("status").textContent = text;
  $("status").dataset.state = "signed-out";
  $("login").hidden = false;
  $("logout").hidden = true;
}

// Times in a token are seconds since 1970 (RFC 7519): shown as a date a person reads, with the
// raw number kept beside it.
const TIME_CLAIMS = new Set(["exp", "iat", "nbf", "auth_time", "updated_at"]);

function claimText(key, value) {
  if (TIME_CLAIMS.has(key) && Number.isFinite(value)) {
    return `${new Date(value * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC")} (${value})`;
  }
  return typeof value === "string" ? value : JSON.stringify(value);
}

function showClaims(claims) {
  const name = claims.name || claims.preferred_username || claims.email || claims.sub;
  $("status").textContent = `Signed in as ${name}`;
  $("status").dataset.state = "signed-in";
  $("login").hidden = true;
  $("logout").hidden = false;
  const rows = Object.entries(claims).map(([key, value]) => {
    const row = document.createElement("tr");
    const k = document.createElement("td");
    const v = document.createElement("td");
    k.textContent = key;
    v.textContent = claimText(key, value);
    row.append(k, v);
    return row;
  });
  $("claims").querySelector("tbody").replaceChildren(...rows);
  $("claims").hidden = false;
  startLive();
}

async function loadUser() {
  $("status").textContent = "Checking your session…";
  $("status").dataset.state = "checking";
  try {
    const response = await fetch("/account/me", { credentials: "same-origin", cache: "no-store" });
    showNode(response);
    if (response.status === 200) {
      showClaims(await response.json());
    } else if (response.status === 404) {
      showSignedOut("Not signed in");
    } else {
      showSignedOut(`Could not tell who you are (HTTP ${response.status}); try again`);
    }
  } catch (error) {
    showSignedOut(`The gateway did not answer (${error.message})`);
  }
}

async function callApi() {
  $("api-status").textContent = "Calling…";
  $("api-status").dataset.state = "calling";
  try {
    const response = await fetch("/api/hello", {
      credentials: "same-origin",
      cache: "no-store",
      headers: CSRF_HEADER,
    });
    showNode(response);
    const text = await response.text();
    $("api-status").textContent = `HTTP ${response.status}${response.ok ? "" : " " + response.statusText}`.trim();
    $("api-status").dataset.state = response.ok ? "ok" : "error";
    let shown = text;
    try {
      shown = JSON.stringify(JSON.parse(text), null, 2);
    } catch (_) {
      // Not JSON: shown as it came.
    }
    $("api-body").textContent = shown;
    $("api-body").hidden = false;
    if (response.status === 401) {
      // The session is gone (logged out elsewhere, expired, or lost): the page says so too.
      loadUser();
    }
  } catch (error) {
    $("api-status").textContent = `The gateway did not answer (${error.message})`;
    $("api-status").dataset.state = "error";
  }
}

$("login").addEventListener("click", () => {
  window.location.assign("/account/login?landingpage=" + encodeURIComponent(window.location.pathname));
});
$("call-api").addEventListener("click", callApi);

// The back/forward cache keeps a page as it was left. The user's data leaves the screen before
// the page is stored, and a page brought back asks the gateway again, so going back after a
// logout shows no one.
window.addEventListener("pagehide", () => {
  stopLive();
  clearUser();
  $("status").textContent = "Checking your session…";
  $("status").dataset.state = "checking";
  $("logout").hidden = true;
});
window.addEventListener("pageshow", (event) => {
  if (event.persisted) {
    loadUser();
  }
});

$("origin").textContent = window.location.origin;
loadUser();
