// Offline verification in the browser: the issuers' public keys and their signed status lists
// (IETF Token Status List, application/statuslist+jwt) are kept with the time they were
// fetched; a scanned token is checked with WebCrypto Ed25519 for signature, issuer binding,
// revocation and expiry. A status list past its maximum age (its exp) is not used: the kiosk
// refuses rather than guesses. Checks made offline are queued and reported for the audit log.
"use strict";
const Offline = (() => {
  const TRUST = "kioskTrust";
  const QUEUE = "kioskQueue";
  const LIST_TYPE = "application/statuslist+jwt";
  // The same field-level disclosure as the service (shared/offline_verifier.py).
  const PURPOSE_ATTRIBUTES = {
    arrival_registration: ["holder_name", "marital_status", "children_count"],
    maternal_care_services: ["holder_name", "children_count"],
    benefits: ["holder_name", "marital_status", "children_count", "valid_until"],
    identity_check: [],
  };
  const CLAIM_ATTRIBUTES = { name: "holder_name", ms: "marital_status", ch: "children_count", exp: "valid_until" };

  function bytes(b64u) {
    let s = b64u.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  }
  const json = (b64u) => JSON.parse(new TextDecoder().decode(bytes(b64u)));

  function load() {
    try {
      const t = JSON.parse(localStorage.getItem(TRUST));
      if (t && Array.isArray(t.keys)) return t;
    } catch (e) { /* a damaged store is an empty one */ }
    return { keys: null, keysFetchedAt: null, lists: {} };
  }

  /** The claims of a compact EdDSA JWS if ``jwk`` signed it, else null. */
  async function verifyJws(token, jwk) {
    const parts = token.split(".");
    if (parts.length !== 3 || !jwk) return null;
    try {
      const key = await crypto.subtle.importKey(
        "jwk", { kty: "OKP", crv: "Ed25519", x: jwk.x }, { name: "Ed25519" }, false, ["verify"]);
      const ok = await crypto.subtle.verify(
        { name: "Ed25519" }, key, bytes(parts[2]), new TextEncoder().encode(parts[0] + "." + parts[1]));
      if (!ok) return null;
      const claims = json(parts[1]);
      return claims && typeof claims === "object" ? claims : null;
    } catch (e) {
      return null;
    }
  }

  async function inflate(data) {
    const stream = new Blob([data]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  /** A status list token checked against the service's status-list key, and as ``issuer``'s own
   * list: its claims and bits. Every issuer's list is signed by that one key, so only the list's
   * signed ``jurisdiction`` tells them apart (an answer swapped on the way is not kept). */
  async function readList(jwt, keys, issuer) {
    const header = json(jwt.split(".")[0]);
    if (header.typ !== "statuslist+jwt") throw new Error("not a status list token");
    const jwk = keys.find((k) => k.kid === header.kid && k.purpose === "status-list");
    const claims = await verifyJws(jwt, jwk);
    if (!claims || !claims.status_list || claims.status_list.bits !== 1) {
      throw new Error("the status list's signature does not verify");
    }
    if (claims.jurisdiction !== issuer) throw new Error("the status list is another issuer's");
    return { claims, bits: await inflate(bytes(claims.status_list.lst)) };
  }

  /** Fetch the keys and every issuer's status list; a list that does not verify is not kept. */
  async function refresh() {
    const r = await fetch("/v1/keys", { cache: "no-store" });
    if (!r.ok) throw new Error("keys unavailable: " + r.status);
    const jwks = await r.json();
    const trust = load();
    const issuers = [...new Set(jwks.keys.filter((k) => k.jurisdiction).map((k) => k.jurisdiction))];
    for (const issuer of issuers) {
      const lr = await fetch(`/v1/status-lists/${issuer}`, { headers: { Accept: LIST_TYPE }, cache: "no-store" });
      if (!lr.ok) continue;
      const jwt = (await lr.text()).trim();
      try { await readList(jwt, jwks.keys, issuer); } catch (e) { continue; } // not kept
      trust.lists[issuer] = { jwt, fetchedAt: Date.now() };
    }
    trust.keys = jwks.keys;
    trust.keysFetchedAt = Date.now();
    localStorage.setItem(TRUST, JSON.stringify(trust));
    return summary();
  }

  /** What the kiosk holds: issuers, the oldest list's age and maximum age (seconds), its ttl. */
  function summary(now = Date.now()) {
    const trust = load();
    const out = { keys: trust.keys ? trust.keys.length : 0, issuers: [], oldestAge: null, maxAge: null, ttl: null };
    for (const [issuer, entry] of Object.entries(trust.lists)) {
      try {
        const c = json(entry.jwt.split(".")[1]);
        const age = Math.max(0, Math.round(now / 1000 - c.iat));
        out.issuers.push(issuer);
        if (out.oldestAge === null || age > out.oldestAge) {
          out.oldestAge = age;
          out.maxAge = c.exp - c.iat;
        }
        out.ttl = out.ttl === null ? c.ttl : Math.min(out.ttl, c.ttl);
      } catch (e) { /* skipped: verified again before any use */ }
    }
    return out;
  }

  function duration(seconds) {
    if (seconds < 120) return `${seconds} s`;
    if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
    return `${Math.round(seconds / 3600)} h`;
  }

  function attributes(claims, purpose) {
    const named = {};
    for (const [claim, name] of Object.entries(CLAIM_ATTRIBUTES)) if (claim in claims) named[name] = claims[claim];
    const out = {};
    for (const f of PURPOSE_ATTRIBUTES[purpose] || []) if (f in named) out[f] = named[f];
    return out;
  }

  /** The verdict on a scanned token from what the kiosk holds: never a guess. */
  async function verify(token, purpose, now = Date.now()) {
    const invalid = (reason) => ({ result: "invalid_signature", reason, attributes: {} });
    const refuse = (reason, issuer, number) => ({ result: "status_unknown", reason, issuer, certificate_number: number, attributes: {} });
    const trust = load();
    if (!trust.keys) return refuse("This kiosk has no keys yet: connect it to the network once. 尚未下载密钥。");
    const parts = token.trim().split(".");
    let header;
    try { header = json(parts[0]); } catch (e) { return invalid("not a signed QR code"); }
    if (parts.length !== 3 || !header || header.alg !== "EdDSA") return invalid("not a signed QR code");
    const jwk = trust.keys.find((k) => k.kid === header.kid && k.jurisdiction);
    if (!jwk) return invalid("signed by a key no issuer published");
    if (jwk.expires_at && Date.parse(jwk.expires_at) < now) return invalid("signed by a key past its overlap window");
    const claims = await verifyJws(token.trim(), jwk);
    if (!claims) return invalid("the signature does not match");
    if (String(claims.iss) !== jwk.jurisdiction) return invalid("the key does not belong to the issuer named");
    const number = claims.num, issuer = claims.iss;
    const entry = trust.lists[issuer];
    if (!entry) return refuse(`No status list of issuer ${issuer} is held: connect to fetch it. 无状态列表。`, issuer, number);
    let list;
    try { list = await readList(entry.jwt, trust.keys, issuer); } catch (e) { return refuse("The held status list does not verify.", issuer, number); }
    const age = Math.max(0, Math.round(now / 1000 - list.claims.iat));
    const maxAge = list.claims.exp - list.claims.iat;
    if (now / 1000 > list.claims.exp) {
      return refuse(`The status list is ${duration(age)} old, older than its maximum age of ${duration(maxAge)}: `
        + "connect to refresh it before checking. 状态列表已过期，请联网更新。", issuer, number);
    }
    const ref = claims.status && claims.status.status_list;
    const idx = ref ? ref.idx : claims.sti;
    if (!Number.isInteger(idx) || idx < 0 || (idx >> 3) >= list.bits.length) {
      return refuse("The certificate's status index is not in the list.", issuer, number);
    }
    const today = new Date(now).toISOString().slice(0, 10);
    let result = "valid";
    const revokedKeys = Array.isArray(list.claims.revoked_keys) ? list.claims.revoked_keys : [];
    if (revokedKeys.includes(header.kid)) result = "revoked"; // the issuer withdrew the key itself
    else if ((list.bits[idx >> 3] >> (idx & 7)) & 1) result = "revoked";
    else if (String(claims.exp) < today) result = "expired";
    return { result, issuer, certificate_number: number, attributes: attributes(claims, purpose), listAge: age };
  }

  // --- checks made offline, reported when back online ---------------------------------------------
  function queue() {
    try { return JSON.parse(localStorage.getItem(QUEUE)) || []; } catch (e) { return []; }
  }

  function enqueue(token, purpose, result) {
    const q = queue();
    q.push({ id: crypto.randomUUID(), token, purpose, result, checked_at: new Date().toISOString() });
    localStorage.setItem(QUEUE, JSON.stringify(q));
  }

  /** Report the queued checks (in batches); the same batch retried carries the same key. */
  async function flush(bearer) {
    let sent = 0;
    for (;;) {
      const batch = queue().slice(0, 500);
      if (!batch.length || !bearer) return sent;
      const r = await fetch("/v1/verifications/offline", {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          Authorization: "Bearer " + bearer,
          "Idempotency-Key": `offline-${batch[0].id}-${batch.length}`,
        },
        body: JSON.stringify({ checks: batch.map(({ token, purpose, result, checked_at }) => ({ token, purpose, result, checked_at })) }),
      });
      if (!r.ok && r.status !== 422) return sent; // try again later; a 422 batch would never pass
      const done = new Set(batch.map((c) => c.id));
      localStorage.setItem(QUEUE, JSON.stringify(queue().filter((c) => !done.has(c.id))));
      sent += batch.length;
    }
  }

  return { refresh, verify, summary, duration, enqueue, flush, queued: () => queue().length };
})();
