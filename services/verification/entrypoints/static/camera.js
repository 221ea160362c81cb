// Camera scanning: live video from the webcam, frames decoded in the page by the vendored
// jsQR (no network needed). A code is handed on once while it stays in view; it can be checked
// again after it has left the picture for a moment.
"use strict";
const Camera = (() => {
  let stream = null;
  let timer = null;
  let last = "";
  let lastSeen = 0;
  const canvas = document.createElement("canvas");
  const ctx = canvas.getContext("2d", { willReadFrequently: true });

  async function start(video, onCode) {
    if (stream) return;
    stream = await navigator.mediaDevices.getUserMedia({
      video: { facingMode: "environment", width: { ideal: 1280 }, height: { ideal: 720 } },
      audio: false,
    });
    video.srcObject = stream;
    await video.play();
    const tick = () => {
      if (!stream) return;
      if (video.readyState >= 2 && video.videoWidth) {
        canvas.width = video.videoWidth;
        canvas.height = video.videoHeight;
        ctx.drawImage(video, 0, 0);
        const image = ctx.getImageData(0, 0, canvas.width, canvas.height);
        const code = jsQR(image.data, image.width, image.height, { inversionAttempts: "dontInvert" });
        const now = Date.now();
        if (code && code.data) {
          if (code.data !== last) onCode(code.data);
          last = code.data;
          lastSeen = now;
        } else if (now - lastSeen > 1500) {
          last = "";
        }
      }
      timer = setTimeout(tick, 150);
    };
    tick();
  }

  function stop(video) {
    clearTimeout(timer);
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = null;
    last = "";
    video.srcObject = null;
  }

  return { start, stop, active: () => stream !== null };
})();
