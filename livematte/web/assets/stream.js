// Draws livematte's frame stream (/api/stream) onto a canvas, keeping the frame's transparency.
// A message is: uint32 N (little-endian), N bytes of JPEG colour, then a JPEG of the alpha as
// grey (absent when the picture is opaque). The alpha goes into the canvas's alpha channel; the
// canvas holds straight colours, which the browser composites as any transparent picture.
"use strict";

function livematteToken() {
  return new URLSearchParams(location.search).get("token") || "";
}

function livematteStream(canvas, kind, onFrame) {
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const scratch = document.createElement("canvas");
  const sctx = scratch.getContext("2d", { willReadFrequently: true });
  let pending = null, drawing = false;

  async function draw(buffer) {
    const n = new DataView(buffer).getUint32(0, true);
    const colour = await createImageBitmap(new Blob([new Uint8Array(buffer, 4, n)], { type: "image/jpeg" }));
    const alpha = buffer.byteLength > 4 + n
      ? await createImageBitmap(new Blob([new Uint8Array(buffer, 4 + n)], { type: "image/jpeg" })) : null;
    if (canvas.width !== colour.width || canvas.height !== colour.height) {
      canvas.width = scratch.width = colour.width;
      canvas.height = scratch.height = colour.height;
    }
    ctx.drawImage(colour, 0, 0);
    if (alpha) {
      sctx.drawImage(alpha, 0, 0);
      const w = canvas.width, h = canvas.height;
      const picture = ctx.getImageData(0, 0, w, h);
      const rgba = new Uint32Array(picture.data.buffer);
      const grey = new Uint32Array(sctx.getImageData(0, 0, w, h).data.buffer);
      for (let i = 0; i < rgba.length; i++) rgba[i] = (rgba[i] & 0x00ffffff) | ((grey[i] & 0xff) << 24);
      ctx.putImageData(picture, 0, 0);
      alpha.close();
    }
    colour.close();
    if (onFrame) onFrame();
  }

  async function drawNewest() {
    drawing = true;
    try {
      while (pending) { const buffer = pending; pending = null; await draw(buffer); }
    } finally { drawing = false; }
  }

  function connect() {
    const ws = new WebSocket(`ws://${location.host}/api/stream?kind=${kind}&token=${encodeURIComponent(livematteToken())}`);
    ws.binaryType = "arraybuffer";
    ws.onmessage = (event) => { pending = event.data; if (!drawing) drawNewest(); };  // newest wins
    ws.onclose = () => setTimeout(connect, 1000);  // the session may come back (OBS keeps the page)
  }
  connect();
}
