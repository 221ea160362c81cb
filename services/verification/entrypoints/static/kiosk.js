// The kiosk page: number + identity number, a scanner that types, or the camera; online it asks
// the verification service, offline it verifies in the page (offline.js) and queues the check.
"use strict";
const WORDS = {
  valid: ["VALID 有效", "Genuine, in force, held by this person.", "valid"],
  expired: ["EXPIRED 已过期", "The certificate is no longer in force.", "bad"],
  revoked: ["REVOKED 已撤销", "The issuer withdrew this certificate.", "bad"],
  holder_mismatch: ["NOT THIS PERSON 持证人不符", "The certificate belongs to someone else.", "bad"],
  not_found: ["NOT FOUND 未找到", "No such certificate. Check the number.", "warn"],
  invalid_signature: ["NOT GENUINE 签名无效", "The QR code was altered or not issued by a registry.", "bad"],
  status_unknown: ["NOT CHECKED 未核验", "", "warn"],
};
const LABELS = { holder_name: "Name 姓名", marital_status: "Marital status 婚姻状况",
  children_count: "Children 子女数", valid_until: "Valid until 有效期至", issuer: "Issuer 签发地" };
const $ = (id) => document.getElementById(id);
const tokenField = $("kiosk_token");
tokenField.value = sessionStorage.getItem("kioskToken") || "";
tokenField.addEventListener("change", () => sessionStorage.setItem("kioskToken", tokenField.value.trim()));
if (!tokenField.value) tokenField.closest("details").open = true;
const bearer = () => tokenField.value.trim();

function mode() { return document.querySelector("input[name=mode]:checked").value; }
function showMode() {
  $("by-number").hidden = mode() !== "number";
  $("by-token").hidden = mode() !== "token";
  $("by-camera").hidden = mode() !== "camera";
  if (mode() === "camera") {
    Camera.start($("camera"), scanned).then(
      () => { $("camera-hint").textContent = "Hold the QR code up to the camera. 请将二维码对准摄像头。"; },
      (err) => { $("camera-hint").textContent = "No camera: " + err.name + ". 无法打开摄像头。"; });
  } else {
    Camera.stop($("camera"));
    (mode() === "number" ? $("certificate_number") : $("token")).focus();
  }
}
document.querySelectorAll("input[name=mode]").forEach((r) => r.addEventListener("change", showMode));
// A scanner types the payload and ends with Enter: submit instead of adding a new line.
$("token").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); $("check").requestSubmit(); } });

function show(title, sub, tone, rows) {
  $("answer").className = tone || "";
  $("verdict").textContent = title;
  $("verdict-sub").textContent = sub;
  const dl = $("details");
  dl.replaceChildren();
  for (const [k, v] of rows || []) {
    const dt = document.createElement("dt"); dt.textContent = LABELS[k] || k;
    const dd = document.createElement("dd"); dd.textContent = v;
    dl.append(dt, dd);
  }
}

function showResult(data, offline) {
  const [title, sub, tone] = WORDS[data.result] || [data.result, "", "warn"];
  const rows = Object.entries(data.attributes || {});
  if (data.issuer) rows.push(["issuer", data.issuer]);
  let why = data.reason || sub;
  if (offline && data.result !== "status_unknown") {
    why = `${sub} Checked offline 离线核验 (status list ${Offline.duration(data.listAge || 0)} old).`;
  }
  show(title, why, tone, rows);
  $("answer").dataset.offline = offline ? "yes" : "no";
}

document.addEventListener("keydown", (e) => {
  if (e.key !== "Escape") return;
  ["certificate_number", "holder_id_number", "token", "token_holder"].forEach((id) => { $(id).value = ""; });
  show("Ready 就绪", "Type or scan a certificate. 请输入或扫描证明。", "", []);
  if (mode() !== "camera") (mode() === "number" ? $("certificate_number") : $("token")).focus();
});

async function checkOffline(token, purpose) {
  const data = await Offline.verify(token, purpose);
  Offline.enqueue(token, purpose, data.result);
  showResult(data, true);
  showNet();
}

async function check(url, body) {
  const offlineToken = url.endsWith("/token") ? body.token : null;
  if (!navigator.onLine && offlineToken) return checkOffline(offlineToken, body.purpose);
  let r;
  try {
    r = await fetch(url, { method: "POST", body: JSON.stringify(body),
      headers: { "Content-Type": "application/json", "Authorization": "Bearer " + bearer() } });
  } catch (err) {
    if (offlineToken) return checkOffline(offlineToken, body.purpose);
    show("OFFLINE 网络中断", "Numbers need the network: scan the QR code to check offline. 离线时请扫码。", "warn", []);
    return;
  }
  const data = await r.json().catch(() => ({}));
  if (r.ok) {
    showResult(data, false);
  } else if (r.status === 401 || r.status === 403) {
    show("KIOSK NOT AUTHORISED 终端未授权", "Enter this kiosk's credential below.", "warn", []);
    tokenField.closest("details").open = true;
  } else if (r.status === 429) {
    show("PLEASE WAIT 请稍候", `Too many checks. Retry in ${r.headers.get("Retry-After") || "a few"} s.`, "warn", []);
  } else {
    const why = (data.errors || []).map((x) => x.field + ": " + x.message).join("; ") || data.detail || r.statusText;
    show("CANNOT CHECK 无法核验", why, "warn", []);
  }
}

let busy = false;
async function submit() {
  if (busy) return;
  busy = true;
  $("submit").disabled = true;
  const purpose = $("purpose").value;
  show("Checking… 核验中", "", "", []);
  try {
    if (mode() === "number") {
      await check("/v1/verifications", { certificate_number: $("certificate_number").value.trim(),
        holder_id_number: $("holder_id_number").value.trim().toUpperCase(), purpose });
    } else {
      const body = { token: $("token").value.trim(), purpose };
      const holder = $("token_holder").value.trim().toUpperCase();
      if (holder) body.holder_id_number = holder;
      await check("/v1/verifications/token", body);
    }
  } finally {
    busy = false;
    $("submit").disabled = false;
  }
}
$("check").addEventListener("submit", (e) => { e.preventDefault(); submit(); });

function scanned(code) {
  $("token").value = code;
  submit();
}

// --- network state, the kept status lists, and the queued offline checks ------------------------
function showNet() {
  const s = Offline.summary();
  const online = navigator.onLine;
  const net = $("net");
  net.dataset.state = online ? "online" : "offline";
  const lists = s.oldestAge === null ? "no status list held 无状态列表"
    : `status list ${Offline.duration(s.oldestAge)} old (max ${Offline.duration(s.maxAge)}) 状态列表`;
  const queued = Offline.queued();
  net.textContent = (online ? "ONLINE 在线" : "OFFLINE 离线 — checks by QR code only")
    + ` · ${lists}` + (queued ? ` · ${queued} offline check(s) to report 待上报` : "");
}

async function sync() {
  if (!navigator.onLine) return showNet();
  try {
    await Offline.refresh();
    await Offline.flush(bearer());
  } catch (e) {
    console.warn("kiosk refresh failed", e);
  }
  showNet();
}

window.addEventListener("online", sync);
window.addEventListener("offline", showNet);
$("refresh").addEventListener("click", sync);
setInterval(showNet, 30_000);
(function schedule() {
  const ttl = Offline.summary().ttl || 300;
  setTimeout(() => sync().finally(schedule), Math.min(ttl, 300) * 1000);
})();
if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("/kiosk/sw.js", { scope: "/kiosk" }).catch((e) => console.warn("no service worker", e));
}
window.kiosk = { sync, ready: sync() };
