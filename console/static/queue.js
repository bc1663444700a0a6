// Live hit queue: server-sent events (the browser resumes with Last-Event-ID after a drop),
// newest and highest priority first, a sound and a flash on every new hit, unattended marked.
"use strict";
(function () {
  const queue = document.getElementById("queue");
  const live = document.getElementById("live");
  const banner = document.getElementById("banner");
  const empty = document.getElementById("empty");
  const soundBtn = document.getElementById("sound");
  const unattendedMs = Number(queue.dataset.unattendedMs || 300000);
  let audio = null;
  let unseen = 0;
  const baseTitle = document.title;

  // Browsers allow sound only after a tap: the button turns it on (and remembers).
  function setSound(on) {
    if (on && !audio) { audio = new (window.AudioContext || window.webkitAudioContext)(); }
    if (audio && on && audio.state === "suspended") { audio.resume(); }
    soundBtn.setAttribute("aria-pressed", on ? "true" : "false");
    soundBtn.textContent = on ? "Sound on" : "Sound off";
    try { localStorage.setItem("alpr-sound", on ? "1" : "0"); } catch (e) { /* private mode */ }
  }
  soundBtn.addEventListener("click", function () { setSound(soundBtn.getAttribute("aria-pressed") !== "true"); });
  if (localStorage.getItem("alpr-sound") === "1") { setSound(true); }

  function chime() {
    if (!audio || soundBtn.getAttribute("aria-pressed") !== "true") { return; }
    const t = audio.currentTime;
    [880, 660, 880].forEach(function (f, i) {
      const o = audio.createOscillator(), g = audio.createGain();
      o.frequency.value = f; o.type = "square";
      g.gain.setValueAtTime(0.25, t + i * 0.18); g.gain.exponentialRampToValueAtTime(0.001, t + i * 0.18 + 0.16);
      o.connect(g).connect(audio.destination); o.start(t + i * 0.18); o.stop(t + i * 0.18 + 0.17);
    });
  }

  function signal(row) {
    row.classList.add("fresh");
    unseen += 1;
    document.title = "(" + unseen + ") NEW HIT · " + baseTitle;
    banner.textContent = "New hit: " + row.querySelector(".plate").textContent;
    banner.hidden = false;
    banner.style.animation = "none"; void banner.offsetWidth; banner.style.animation = "";
    chime();
    if (navigator.vibrate) { navigator.vibrate([200, 100, 200]); }
  }
  document.addEventListener("visibilitychange", function () { if (!document.hidden) { unseen = 0; document.title = baseTitle; } });
  banner.addEventListener("click", function () { banner.hidden = true; });

  function place(row) {
    const key = row.dataset.sort;
    for (const other of queue.children) {
      if (other !== row && other.dataset.sort > key) { queue.insertBefore(row, other); return; }
    }
    queue.appendChild(row);
  }

  function upsert(msg) {
    const tpl = document.createElement("template");
    tpl.innerHTML = msg.html.trim();  // rendered and escaped by the server's template
    const row = tpl.content.firstElementChild;
    row.dataset.bornMs = String(Date.now() - msg.age_ms);
    const old = document.getElementById(row.id);
    if (old) { old.remove(); }
    place(row);
    empty.hidden = true;
    markUnattended(row);
    if (msg.kind === "created" && !old) { signal(row); }
    // When it was on screen (for the latency benchmark): after the next paint.
    requestAnimationFrame(function () { setTimeout(function () { row.dataset.shownMs = String(Date.now()); }, 0); });
  }

  function markUnattended(row) {
    const born = Number(row.dataset.bornMs || row.dataset.createdMs);
    if (row.dataset.pending === "1" && Date.now() - born > unattendedMs) { row.classList.add("unattended"); }
  }
  setInterval(function () { for (const row of queue.children) { markUnattended(row); } }, 5000);

  function connect() {
    const es = new EventSource(queue.dataset.events);
    es.onopen = function () { live.textContent = "live"; live.className = "live on"; };
    es.onerror = function () { live.textContent = "reconnecting…"; live.className = "live off"; };
    es.addEventListener("alert", function (e) { upsert(JSON.parse(e.data)); });
    es.addEventListener("reload", function () { es.close(); location.reload(); });
    es.addEventListener("signedout", function () { es.close(); location.assign("/signin?why=your+session+has+ended&next=/queue"); });
    es.addEventListener("denied", function (e) { es.close(); live.textContent = JSON.parse(e.data).why; live.className = "live off"; });
  }
  connect();
})();
