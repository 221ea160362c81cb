// Reads our status list with implementations none of us wrote: the IETF Token Status List reader
// of @sd-jwt/jwt-status-list (OpenWallet Foundation) and Node's own Ed25519 verification.
// stdin: {"list": "<statuslist+jwt>", "jwk": {...the status-list key...}, "certificates": ["<jws>", ...]}
// stdout: {"typ", "signature_ok", "sub", "size", "statuses": "0100…" (one character per index), "references": [...]}
"use strict";
const crypto = require("node:crypto");
const { getListFromStatusListJWT, getStatusListFromJWT } = require("@sd-jwt/jwt-status-list");

const input = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
const [h, p, s] = input.list.split(".");
const header = JSON.parse(Buffer.from(h, "base64url").toString("utf8"));
const payload = JSON.parse(Buffer.from(p, "base64url").toString("utf8"));
const key = crypto.createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: input.jwk.x }, format: "jwk" });
const signatureOk = crypto.verify(null, Buffer.from(`${h}.${p}`), key, Buffer.from(s, "base64url"));

const list = getListFromStatusListJWT(input.list);
const size = list.statusList.length;
let statuses = "";
for (let i = 0; i < size; i++) statuses += String(list.getStatus(i));
const references = (input.certificates || []).map((jws) => getStatusListFromJWT(jws));
process.stdout.write(JSON.stringify({ typ: header.typ, signature_ok: signatureOk, sub: payload.sub,
  exp: payload.exp, iat: payload.iat, size, statuses, references }));
