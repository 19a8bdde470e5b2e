// Draws livematte's frame stream (/api/stream) onto a canvas, keeping the frame's transparency.
// A message is: uint32 N (little-endian), N bytes of JPEG colour, then a JPEG of the alpha as
// grey (absent when the picture is opaque). The alpha goes into the canvas's alpha channel, and
// the browser composites the canvas as any transparent picture.
"use strict";

function livematteToken() {
  return new URLSearchParams(location.search).get("token") || "";
}

// The SVG filter that turns the grey alpha picture into alpha: A = R, in sRGB (a filter's default,
// linearRGB, would bend the values), colour 0. Drawn "destination-in", it keeps the colour
// already on the canvas by that alpha; Skia does it, no pixel loop in JavaScript.
const ALPHA_FILTER = `<svg xmlns="http://www.w3.org/2000/svg" width="0" height="0" style="position:absolute">
  <filter id="livematte-alpha" color-interpolation-filters="sRGB">
    <feColorMatrix type="matrix" values="0 0 0 0 0  0 0 0 0 0  0 0 0 0 0  1 0 0 0 0"/>
  </filter></svg>`;

function livematteStream(canvas, kind, onFrame) {
  document.body.insertAdjacentHTML("beforeend", ALPHA_FILTER);
  const ctx = canvas.getContext("2d");
  let pending = null, drawing = false;

  async function draw(buffer) {
    const n = new DataView(buffer).getUint32(0, true);
    const colour = await createImageBitmap(new Blob([new Uint8Array(buffer, 4, n)], { type: "image/jpeg" }));
    const alpha = buffer.byteLength > 4 + n
      ? await createImageBitmap(new Blob([new Uint8Array(buffer, 4 + n)], { type: "image/jpeg" })) : null;
    if (canvas.width !== colour.width || canvas.height !== colour.height) {
      canvas.width = colour.width;
      canvas.height = colour.height;
    }
    ctx.globalCompositeOperation = "copy";
    ctx.drawImage(colour, 0, 0);
    if (alpha) {
      ctx.globalCompositeOperation = "destination-in";
      ctx.filter = "url(#livematte-alpha)";
      ctx.drawImage(alpha, 0, 0);
      ctx.filter = "none";
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
