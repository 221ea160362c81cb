// The kiosk's service worker: keeps the page and its scripts so the kiosk opens and verifies
// with no network. Network first (a kiosk online always runs the current page), cache when
// offline. API calls (/v1/...) are not touched: keys and status lists are kept by the page
// itself, with the time they were fetched, and checked before every use.
"use strict";
const CACHE = "kiosk-v1";
const FILES = [
  "/kiosk",
  "/kiosk/kiosk.js",
  "/kiosk/offline.js",
  "/kiosk/camera.js",
  "/kiosk/jsQR.js",
  "/kiosk/manifest.webmanifest",
  "/kiosk/icon.svg",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(FILES)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((names) => Promise.all(names.filter((n) => n !== CACHE).map((n) => caches.delete(n))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin || !FILES.includes(url.pathname)) {
    return;
  }
  event.respondWith(
    fetch(event.request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(CACHE).then((c) => c.put(url.pathname, copy));
        }
        return response;
      })
      .catch(() => caches.match(url.pathname).then((hit) => hit || Response.error())),
  );
});
