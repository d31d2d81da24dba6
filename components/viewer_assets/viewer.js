// MosMed CT viewer: st.components.v2 ES module (see components/viewer.py for the Python side and the wire
// format, mosmed/wire.py for the encoding).
//
// The study's int16 HU volume and its label volume reach the browser ONCE (zlib streams, one per slice,
// decoded here by the browser's own DecompressionStream, the slice on screen first). Everything after that is
// computed here on the CPU with a lookup table into canvas 2D: windowing, overlays, scrolling, zoom and pan,
// the coronal and sagittal reformats, MIP / MinIP slabs, HU readouts and measurements. A rerun of the Python
// script re-delivers only a small header (navigation, style), never the data again.
//
// Inputs are DATA: bindings.json (delivered in the header) maps keys and mouse gestures to the actions in
// ACTIONS below; the Keys panel lists the same table.
//
// The default export runs on EVERY render (each rerun re-delivers `data`), so all state lives in one instance
// object per mount point.

const INSTANCES = new WeakMap();
const LINK_EVENT = "msv-link";
const PLANES = ["axial", "coronal", "sagittal"];
// Crosshair / view colours; none of them reddish (r never > g + 30), so the lesion overlay stays the only red.
const PLANE_COLOR = { axial: "#3d9df3", coronal: "#34c759", sagittal: "#f2e94e" };
// Orientation labels (display convention, docs/ARCHITECTURE.md): [top, bottom, left, right].
const PLANE_LABELS = { axial: ["A", "P", "R", "L"], coronal: ["S", "I", "R", "L"], sagittal: ["S", "I", "A", "P"] };
const PLANE_NAME = { axial: "Axial", coronal: "Coronal", sagittal: "Sagittal" };
const MEASURE_COLOR = "#ffe45c";
const MAX_MEASURES = 200;
const DECODE_PARALLEL = 4;
// Exposed for benchmarks and browser tests: input event -> painted latencies per kind (ms), bounded, and one
// record per study data set received (performance.now() times: rendered, first slice painted, all decoded).
const STATS = (window.__msvStats = window.__msvStats || {
  latencies: [], lat: {}, paints: 0, studies: [], renders: 0, lightRenders: 0, needs: 0, stacks: [],
});

function pushLat(kind, ms) {
  const a = (STATS.lat[kind] = STATS.lat[kind] || []);
  a.push(ms);
  if (a.length > 4000) a.splice(0, 2000);
  if (kind === "scroll_key" || kind === "scroll_wheel") {
    STATS.latencies.push(ms);
    if (STATS.latencies.length > 4000) STATS.latencies.splice(0, 2000);
  }
}

// The event's own timestamp (same clock as performance.now()), so input queueing counts in the latency.
function evT(e) {
  const t = e && e.timeStamp;
  return typeof t === "number" && t > 0 && t <= performance.now() ? t : performance.now();
}

function parsePayload(data) {
  let u8 = data;
  if (data instanceof ArrayBuffer) u8 = new Uint8Array(data);
  if (!(u8 instanceof Uint8Array) || u8.length < 8) throw new Error("viewer: no payload");
  const magic = String.fromCharCode(u8[0], u8[1], u8[2], u8[3]);
  if (magic !== "MSV2") throw new Error("viewer: bad payload");
  const n = new DataView(u8.buffer, u8.byteOffset + 4, 4).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(u8.subarray(8, 8 + n)));
  return { header, blob: u8.subarray(8 + n) };
}

async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function el(tag, cls, parent, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text; // textContent only: nothing from data is parsed as HTML
  if (parent) parent.appendChild(e);
  return e;
}

function btn(parent, text, title, cls) {
  const b = el("button", cls || "", parent, text);
  b.type = "button";
  if (title) { b.title = title; b.setAttribute("aria-label", title); }
  return b;
}

// ------------------------------------------------------------------------------------------------ DOM

function buildView(inst, plane) {
  const v = { plane, zoom: 1, panX: 0, panY: 0, cssW: 1, cssH: 1, srcKey: null, imgKey: null, src: null,
              lab: null };
  v.box = el("div", "msv-view msv-view-" + plane);
  v.box.dataset.plane = plane;
  v.box.style.setProperty("--plane-color", PLANE_COLOR[plane]);
  v.canvas = el("canvas", "msv-canvas" + (plane === "axial" ? " msv-axial" : ""), v.box);
  v.canvas.setAttribute("data-testid", "msv-" + plane);
  v.ctx = v.canvas.getContext("2d");
  v.off = document.createElement("canvas");
  v.offCtx = v.off.getContext("2d");
  const [t, b, l, r] = PLANE_LABELS[plane];
  for (const [c, txt] of [["t", t], ["b", b], ["l", l], ["r", r]]) el("div", "msv-lbl " + c, v.box, txt);
  // The axial view keeps the corner classes the tests and benchmarks read (.msv-info.tl/.tr/.bl/.br).
  const cls = plane === "axial" ? "msv-info" : "msv-vinfo";
  v.tl = el("div", cls + " tl", v.box);
  v.tr = el("div", cls + " tr", v.box);
  v.bl = el("div", cls + " bl", v.box);
  v.br = el("div", cls + " br", v.box);
  return v;
}

function buildDom(inst, root) {
  const ui = {};
  ui.root = el("div", "msv", root);
  ui.root.tabIndex = 0;
  ui.root.setAttribute("role", "application");
  ui.root.setAttribute("aria-label", "CT viewer. Keys act while it has focus; press ? for the list.");
  const tb = (ui.toolbar = el("div", "msv-toolbar", ui.root));
  const group = (label) => { const g = el("div", "msv-group", tb); g.setAttribute("role", "group");
                             g.setAttribute("aria-label", label); return g; };
  const gLayout = group("Layout");
  ui.layoutBtns = {};
  ui.layoutBtns["1"] = btn(gLayout, "1 view", "One large view (g)");
  ui.layoutBtns["1+2"] = btn(gLayout, "1+2", "One large view plus two (g)");
  ui.viewBtns = {};
  for (const p of PLANES) ui.viewBtns[p] = btn(gLayout, PLANE_NAME[p].slice(0, 3), `${PLANE_NAME[p]} as the large view (v)`);
  const gTools = group("Tools");
  ui.toolBtns = {};
  for (const [id, txt, title] of [["crosshair", "✛ Cross", "Crosshair (x)"], ["wl", "◐ W/L", "Window / level drag (w)"],
    ["pan", "Pan", "Pan (p)"], ["zoom", "Zoom", "Zoom drag (z)"], ["line", "Line", "Line length (l)"],
    ["ellipse", "Ellipse", "Ellipse region (e)"], ["rect", "Rect", "Rectangle region (b)"]]) {
    ui.toolBtns[id] = btn(gTools, txt, title);
  }
  const gWin = group("Window");
  ui.presetBtns = {};
  for (const [id, txt, key] of [["lung", "Lung", 1], ["mediastinum", "Med", 2], ["soft", "Soft", 3], ["bone", "Bone", 4]]) {
    ui.presetBtns[id] = btn(gWin, txt, `${txt === "Med" ? "Mediastinum" : txt === "Soft" ? "Soft tissue" : txt} window (${key})`);
  }
  ui.invertBtn = btn(gWin, "Inv", "Invert (i)");
  const gZoom = group("Zoom");
  ui.zoomOut = btn(gZoom, "−", "Zoom out (-)");
  ui.zoomIn = btn(gZoom, "+", "Zoom in (+)");
  ui.fitBtn = btn(gZoom, "Fit", "Fit (f)");
  ui.oneBtn = btn(gZoom, "1:1", "1:1 pixels (o)");
  ui.resetBtn = btn(gZoom, "Reset", "Reset view (r)");
  const gSlab = group("Slab");
  ui.slabSel = el("select", "msv-slab", gSlab);
  ui.slabSel.setAttribute("aria-label", "Axial slab (m)");
  ui.slabSel.title = "Axial slab (m)";
  for (const [v, t] of [["off", "Slab off"], ["mip", "MIP"], ["minip", "MinIP"]]) {
    const o = el("option", "", ui.slabSel, t); o.value = v;
  }
  ui.slabMm = el("input", "msv-slab-mm", gSlab);
  ui.slabMm.type = "number";
  ui.slabMm.min = "1";
  ui.slabMm.max = "400";
  ui.slabMm.step = "1";
  ui.slabMm.value = "24";
  ui.slabMm.title = "Slab thickness in mm ([ and ])";
  ui.slabMm.setAttribute("aria-label", "Slab thickness in mm");
  el("span", "msv-unit", gSlab, "mm");
  const gOut = group("Output");
  ui.pngBtn = btn(gOut, "PNG", "Save the views with their measurements as PNG");
  ui.fullBtn = btn(gOut, "Full screen", "Full screen (Shift+F)");
  ui.helpBtn = btn(gOut, "Keys", "Show the mouse and keyboard bindings (?)");

  const body = (ui.body = el("div", "msv-body", ui.root));
  ui.stage = el("div", "msv-stage", body);
  inst.views = {};
  for (const p of PLANES) {
    inst.views[p] = buildView(inst, p);
    ui.stage.appendChild(inst.views[p].box);
  }
  ui.loading = el("div", "msv-loading", ui.stage);
  ui.busy = el("div", "msv-busy", ui.stage, "Loading the study…");

  const bar = el("div", "msv-bar", ui.root);
  ui.prev = btn(bar, "◀", "Previous slice (down the body)");
  ui.slider = el("input", "msv-slider", bar);
  ui.slider.type = "range";
  ui.slider.min = "1";
  ui.slider.step = "1";
  ui.slider.setAttribute("aria-label", "slice");
  ui.next = btn(bar, "▶", "Next slice (up the body)");
  ui.play = btn(bar, "Cine", "Cine (c)");
  ui.fps = el("input", "msv-fps", bar);
  ui.fps.type = "number";
  ui.fps.min = "1";
  ui.fps.max = "30";
  ui.fps.value = "8";
  ui.fps.title = "Cine frames per second";
  ui.fps.setAttribute("aria-label", "Cine frames per second");
  el("span", "msv-unit", bar, "fps");
  ui.lesPrev = btn(bar, "◀ lesion", "Previous slice with lesion");
  ui.lesNext = btn(bar, "lesion ▶", "Next slice with lesion");
  ui.strip = el("canvas", "msv-strip", ui.root);
  ui.strip.title = "Lesion area per slice: click to jump";
  ui.readout = el("div", "msv-readout", ui.root, "Point at the image for HU, voxel and position");
  ui.readout.setAttribute("aria-live", "off");
  const lower = el("div", "msv-lower", ui.root);
  const mBox = el("div", "msv-mbox", lower);
  el("div", "msv-mtitle", mBox, "Measurements");
  ui.measures = el("ol", "msv-measures", mBox);
  ui.mEmpty = el("div", "msv-mempty", mBox, "None yet: choose the line (l), ellipse (e) or rectangle (b) tool and drag on an image.");
  ui.help = el("div", "msv-help", lower);
  ui.help.hidden = true;
  return ui;
}

// ------------------------------------------------------------------------------------------ instance

function makeInstance(parentElement) {
  const inst = {
    id: Math.random().toString(36).slice(2),
    header: null, data: null, token: null,
    cursor: { z: 0, r: 0, c: 0 },
    win: { level: -600, width: 1500, name: "lung" }, invert: false, lut: null, lutKey: null,
    tool: "crosshair", layout: "1+2", main: "axial", active: "axial",
    slab: { mode: "off", mm: 24 },
    measures: [], selected: null, measureByToken: new Map(), nextMeasureId: 1,
    navSeq: null, winSeq: null, playing: false, rafId: null, pending: {}, dirty: new Set(),
    reportTimer: null, lastReported: null, measureTimer: null, api: {}, wheelAcc: 0, drag: null,
  };
  inst.ui = buildDom(inst, parentElement);
  inst.ui.root.msv = apiFor(inst); // for browser tests and benchmarks: geometry helpers, read-only state
  wire(inst);
  return inst;
}

// ------------------------------------------------------------------------------------------ data

function newData(h) {
  const n = h.n, H = h.height, W = h.width;
  const d = { token: h.token, n, H, W, HW: H * W, vol: new Int16Array(n * H * W), lab: null,
              decoded: new Uint8Array(n), nDecoded: 0, pending: new Map(), ready: false,
              rec: { token: h.token, key: h.token, renderT: performance.now(), firstPaintT: null, readyT: null, bytes: 0 },
              partial: false };
  if (h.fill) d.vol.fill(h.fill);
  if (h.has_mask || h.has_lung) d.lab = new Uint8Array(n * H * W);
  return d;
}

function decodeSlice(inst, d, h, blob, k) {
  if (d.decoded[k] || !blob || !h.slices || !h.slices[k]) return Promise.resolve();
  if (d.pending.has(k)) return d.pending.get(k);
  const [r0, r1, c0, c1] = h.crop;
  const cw = c1 - c0, ch = r1 - r0, np = cw * ch;
  const job = (async () => {
    const [off, nLo, nHi, loZlib] = h.slices[k];
    const loRaw = blob.subarray(off, off + nLo);
    const [lo, hi] = await Promise.all([loZlib ? inflate(loRaw) : loRaw, inflate(blob.subarray(off + nLo, off + nLo + nHi))]);
    let labRaw = null;
    const lref = h.labels && h.labels[k];
    if (lref && d.lab) labRaw = await inflate(blob.subarray(lref[0], lref[0] + lref[1]));
    if (inst.data !== d) return;
    if (lo.length !== np || hi.length !== np) throw new Error(`slice ${k}: ${lo.length} + ${hi.length} bytes, expected ${np} + ${np}`);
    const vol = d.vol, base = k * d.HW;
    for (let y = 0, i = 0; y < ch; y++) {
      let o = base + (r0 + y) * d.W + c0;
      for (let x = 0; x < cw; x++, i++) vol[o++] = (lo[i] | (hi[i] << 8)) << 16 >> 16;
    }
    if (labRaw) {
      const lab = d.lab;
      for (let y = 0, i = 0; y < ch; y++) {
        let o = base + (r0 + y) * d.W + c0;
        for (let x = 0; x < cw; x++, i++) lab[o++] = labRaw[i];
      }
    }
    d.decoded[k] = 1;
    d.nDecoded++;
    inst.ui.loading.style.transform = `scaleX(${1 - d.nDecoded / d.n})`;
    inst.ui.root.dataset.decoded = String(d.nDecoded);
    // Reformats read every slice: they are redrawn as slices arrive; the axial view when its slice does.
    invalidate(inst, k === inst.cursor.z ? ["axial", "coronal", "sagittal"] : ["coronal", "sagittal"]);
  })();
  d.pending.set(k, job);
  return job;
}

// Decode the slices this payload holds, the one on screen first, then outward. A partial payload (the slices
// around the one on screen, sent first so the study paints at once) is followed by the whole study: asked
// for as soon as the partial slices are decoded, and decoded into the same arrays.
async function loadData(inst, h, blob, more) {
  let d = more ? inst.data : null;
  if (!d) {
    d = newData(h);
    STATS.studies.push(d.rec);
    STATS.stacks.push(d.rec);
    if (STATS.studies.length > 500) { STATS.studies.splice(0, 250); STATS.stacks.splice(0, 250); }
    inst.data = d;
    inst.ui.root.dataset.ready = "0";
    inst.ui.root.dataset.decoded = "0";
    inst.ui.busy.hidden = false;
  }
  d.partial = !!h.partial;
  d.rec.bytes += blob.length;
  const start = Math.min(Math.max(inst.cursor.z, 0), d.n - 1);
  const order = [start];
  for (let s = 1; order.length < d.n; s++) {
    if (start + s < d.n) order.push(start + s);
    if (start - s >= 0) order.push(start - s);
  }
  const has = (k) => !!(h.slices && h.slices[k]);
  if (has(start)) await decodeSlice(inst, d, h, blob, start);
  let next = 1;
  const worker = async () => {
    while (next < order.length && inst.data === d) {
      const k = order[next++];
      if (has(k)) await decodeSlice(inst, d, h, blob, k);
    }
  };
  await Promise.all(Array.from({ length: DECODE_PARALLEL }, worker));
  if (inst.data !== d) return;
  if (h.partial) { requestData(inst, h.token, "rest"); return; }
  d.ready = true;
  d.rec.readyT = performance.now();
  inst.ui.loading.style.transform = "scaleX(0)";
  inst.ui.root.dataset.ready = "1";
  const kept = inst.measureByToken.get(h.token);
  restoreMeasures(inst, kept && kept.length ? kept.map((m) => ({ ...m })) : inst.header.measures);
  invalidate(inst, PLANES);
  drawStrip(inst);
}

// The study's data served as a file (components/viewer.py, _publish): the slice on screen first (an HTTP
// range request for its bytes), painted while the whole file follows; then every other slice.
async function fetchData(inst, h) {
  const d = newData(h);
  STATS.studies.push(d.rec);
  STATS.stacks.push(d.rec);
  if (STATS.studies.length > 500) { STATS.studies.splice(0, 250); STATS.stacks.splice(0, 250); }
  inst.data = d;
  inst.blob = null;
  d.partial = true;
  inst.ui.root.dataset.ready = "0";
  inst.ui.root.dataset.decoded = "0";
  inst.ui.busy.hidden = false;
  const url = h.data_url;
  const k = Math.min(Math.max(inst.cursor.z, 0), d.n - 1), ref = h.slices[k], lref = h.labels && h.labels[k];
  const a = ref[0], b = lref ? lref[0] + lref[1] : ref[0] + ref[1] + ref[2];
  try {
    const r = await fetch(url, { headers: { Range: `bytes=${a}-${b - 1}` } });
    if (r.status === 206 && inst.data === d) {
      const buf = new Uint8Array(h.data_bytes);
      buf.set(new Uint8Array(await r.arrayBuffer()), a);
      await decodeSlice(inst, d, h, buf, k); // only this slice's bytes are in buf: never handed to paint()
    }
  } catch (err) { /* the whole file below still brings this slice */ }
  // Then the whole file (after the small request, so the two never share the wire). As a range request too:
  // the server compresses whole responses on the fly (gzip level 9 in Python: 0.5-1 s for 12 MB of data that
  // is compressed already) but never a range response.
  let all;
  try {
    d.rec.fetchT = performance.now();
    const r = await fetch(url, { headers: { Range: `bytes=0-${h.data_bytes - 1}` } });
    if (!r.ok) throw new Error(`study data: HTTP ${r.status}`);
    all = new Uint8Array(await r.arrayBuffer());
    d.rec.fetchedT = performance.now();
  } catch (err) {
    if (inst.data === d) requestData(inst, h.token, "rest"); // gone (a rerun orphaned it): ask again
    return;
  }
  if (inst.data !== d) return;
  inst.blob = all;
  await loadData(inst, { ...h, partial: false }, all, true);
}

// ------------------------------------------------------------------------------------------ geometry

function spacing(inst) {
  const s = inst.header.spacing; // [dz, dy, dx]
  return { dz: s[0] > 0 ? s[0] : 1, dy: s[1] > 0 ? s[1] : 1, dx: s[2] > 0 ? s[2] : 1 };
}

// Image of a plane: width, height (pixels) and pixel size (mm). Coronal / sagittal rows are Z reversed.
function planeDims(inst, plane) {
  const h = inst.header, s = spacing(inst);
  if (plane === "axial") return { w: h.width, h: h.height, sx: s.dx, sy: s.dy };
  if (plane === "coronal") return { w: h.width, h: h.n, sx: s.dx, sy: s.dz };
  return { w: h.height, h: h.n, sx: s.dy, sy: s.dz };
}

function planeIndex(inst, plane) {
  return plane === "axial" ? inst.cursor.z : plane === "coronal" ? inst.cursor.r : inst.cursor.c;
}

function planeCount(inst, plane) {
  const h = inst.header;
  return plane === "axial" ? h.n : plane === "coronal" ? h.height : h.width;
}

// Volume index of pixel (x, y) of a plane image at `index`.
function voxelOf(inst, plane, index, x, y) {
  const h = inst.header;
  if (plane === "axial") return { z: index, r: y, c: x };
  if (plane === "coronal") return { z: h.n - 1 - y, r: index, c: x };
  return { z: h.n - 1 - y, r: x, c: index };
}

function pixelOfVoxel(inst, plane, z, r, c) {
  const h = inst.header;
  if (plane === "axial") return { x: c, y: r };
  if (plane === "coronal") return { x: c, y: h.n - 1 - z };
  return { x: r, y: h.n - 1 - z };
}

function viewScale(inst, v) {
  const dm = planeDims(inst, v.plane);
  const fit = Math.min(v.cssW / (dm.w * dm.sx), v.cssH / (dm.h * dm.sy));
  return { dm, s: fit * v.zoom }; // CSS px per mm
}

// Image pixel coordinates (continuous, 0..w) <-> CSS px in the view's canvas.
function imgToCss(inst, v, x, y) {
  const { dm, s } = viewScale(inst, v);
  return { x: v.cssW / 2 + v.panX + (x - dm.w / 2) * dm.sx * s, y: v.cssH / 2 + v.panY + (y - dm.h / 2) * dm.sy * s };
}

function cssToImg(inst, v, px, py) {
  const { dm, s } = viewScale(inst, v);
  return { x: (px - v.cssW / 2 - v.panX) / (dm.sx * s) + dm.w / 2, y: (py - v.cssH / 2 - v.panY) / (dm.sy * s) + dm.h / 2 };
}

function eventCss(v, e) {
  const r = v.canvas.getBoundingClientRect();
  return { x: e.clientX - r.left, y: e.clientY - r.top };
}

// ------------------------------------------------------------------------------------------ sources

// HU values of a plane image (Int16Array w*h) and its labels (Uint8Array or null); axial slabs (MIP/MinIP)
// reduce over the slab's slices. Cached per view by (plane, index, slab): a window change never recomputes it.
function planeSource(inst, v) {
  const d = inst.data, h = inst.header;
  const plane = v.plane, index = planeIndex(inst, plane);
  const slab = plane === "axial" ? slabSlices(inst) : 1;
  const key = `${d.token}|${plane}|${index}|${slab > 1 ? inst.slab.mode + slab : ""}|${d.nDecoded}`;
  if (v.srcKey === key) return;
  const { w, h: ih } = planeDims(inst, plane);
  const W = h.width, H = h.height, HW = W * H, n = h.n;
  let src, lab = null;
  if (plane === "axial") {
    if (slab > 1) {
      const half = Math.floor(slab / 2), lo = Math.max(0, index - half), hi = Math.min(n - 1, index - half + slab - 1);
      src = v.scratch && v.scratch.length === HW ? v.scratch : (v.scratch = new Int16Array(HW));
      src.set(d.vol.subarray(lo * HW, lo * HW + HW));
      const isMax = inst.slab.mode === "mip";
      for (let k = lo + 1; k <= hi; k++) {
        const sl = d.vol.subarray(k * HW, k * HW + HW);
        if (isMax) { for (let i = 0; i < HW; i++) if (sl[i] > src[i]) src[i] = sl[i]; }
        else { for (let i = 0; i < HW; i++) if (sl[i] < src[i]) src[i] = sl[i]; }
      }
    } else {
      src = d.vol.subarray(index * HW, index * HW + HW); // a view, no copy
    }
    if (d.lab) lab = d.lab.subarray(index * HW, index * HW + HW);
  } else {
    const npx = w * ih;
    src = v.scratch && v.scratch.length === npx ? v.scratch : (v.scratch = new Int16Array(npx));
    if (d.lab) lab = v.labScratch && v.labScratch.length === npx ? v.labScratch : (v.labScratch = new Uint8Array(npx));
    for (let y = 0; y < ih; y++) {
      const k = n - 1 - y, o = y * w;
      if (plane === "coronal") {
        const b = k * HW + index * W;
        src.set(d.vol.subarray(b, b + W), o);
        if (lab) lab.set(d.lab.subarray(b, b + W), o);
      } else {
        let b = k * HW + index;
        for (let x = 0; x < w; x++, b += W) { src[o + x] = d.vol[b]; if (lab) lab[o + x] = d.lab[b]; }
      }
    }
  }
  v.src = src;
  v.lab = lab;
  v.srcKey = key;
  v.imgKey = null;
}

function slabSlices(inst) {
  if (inst.slab.mode === "off" || !inst.header) return 1;
  const dz = spacing(inst).dz;
  return Math.max(1, Math.min(inst.header.n, Math.round(inst.slab.mm / dz)));
}

// ------------------------------------------------------------------------------------------ windowing

// 65536-entry RGBA lookup table indexed by HU + 32768: one gather per pixel.
function lut(inst) {
  const w = inst.win, key = `${w.level}|${w.width}|${inst.invert}`;
  if (inst.lutKey === key) return inst.lut;
  const t = inst.lut || new Uint32Array(65536);
  const lo = w.level - w.width / 2, width = Math.max(w.width, 1e-6);
  for (let i = 0; i < 65536; i++) {
    const hu = i - 32768;
    let g = w.width <= 0 ? (hu >= w.level ? 255 : 0) : Math.round(((hu - lo) / width) * 255);
    g = g < 0 ? 0 : g > 255 ? 255 : g;
    if (inst.invert) g = 255 - g;
    t[i] = 0xff000000 | (g << 16) | (g << 8) | g; // little-endian RGBA bytes: r, g, b, a
  }
  inst.lut = t;
  inst.lutKey = key;
  return t;
}

function hexRgb(hex) {
  const m = /^#?([0-9a-f]{6})$/i.exec(String(hex || ""));
  const v = m ? parseInt(m[1], 16) : 0xff3b30;
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

// Windowed image + overlays into the view's offscreen canvas (cached by source, window and style).
function planeImage(inst, v) {
  const h = inst.header, st = h.style || {};
  const key = `${v.srcKey}|${inst.lutKey}|${JSON.stringify(st)}|${inst.showLabels}`;
  if (v.imgKey === key) return;
  const { w, h: ih } = planeDims(inst, v.plane);
  if (v.off.width !== w || v.off.height !== ih) { v.off.width = w; v.off.height = ih; v.imgData = null; }
  if (!v.imgData) v.imgData = v.offCtx.createImageData(w, ih);
  const buf = new Uint32Array(v.imgData.data.buffer);
  const t = inst.lut, src = v.src, npx = w * ih;
  for (let i = 0; i < npx; i++) buf[i] = t[src[i] + 32768];
  const lab = v.lab;
  if (lab && inst.showLabels) {
    const showMask = st.show_mask && h.has_mask, outlineMode = st.mode === "outline", showLung = st.show_lung && h.has_lung;
    const [mr, mg, mb] = hexRgb(st.color), [lr, lg, lb] = hexRgb(st.lung_color || "#34c759");
    const a = outlineMode ? Math.max(0.6, st.opacity) : st.opacity;
    const px = new Uint8ClampedArray(v.imgData.data.buffer);
    const edge = (i, x, y, bit) => (x === 0 || !(lab[i - 1] & bit)) || (x === w - 1 || !(lab[i + 1] & bit)) ||
                                   (y === 0 || !(lab[i - w] & bit)) || (y === ih - 1 || !(lab[i + w] & bit));
    if (showMask || showLung) {
      for (let y = 0, i = 0; y < ih; y++) {
        for (let x = 0; x < w; x++, i++) {
          const l = lab[i];
          if (!l) continue;
          const o = i * 4;
          if (showLung && (l & 2) && edge(i, x, y, 2)) {
            px[o] = lr; px[o + 1] = lg; px[o + 2] = lb;
          }
          if (showMask && (l & 1) && (!outlineMode || edge(i, x, y, 1))) {
            px[o] = px[o] + (mr - px[o]) * a;
            px[o + 1] = px[o + 1] + (mg - px[o + 1]) * a;
            px[o + 2] = px[o + 2] + (mb - px[o + 2]) * a;
          }
        }
      }
    }
  }
  v.offCtx.putImageData(v.imgData, 0, 0);
  v.imgKey = key;
}

// ------------------------------------------------------------------------------------------ painting

// Discrete inputs (a key, a wheel notch, a click) paint at once, in their handler: the frame they land in shows
// them, without waiting for the next animation frame. Continuous ones (drags, hover) coalesce into one paint
// per frame.
const SYNC_KINDS = new Set(["scroll_key", "scroll_wheel", "window", "mpr"]);

function invalidate(inst, planes, kind, t) {
  for (const p of planes) inst.dirty.add(p);
  if (kind) {
    if (inst.pending[kind] === undefined) inst.pending[kind] = t === undefined ? performance.now() : t;
  }
  if (kind && SYNC_KINDS.has(kind)) {
    if (inst.rafId !== null) { cancelAnimationFrame(inst.rafId); inst.rafId = null; }
    paint(inst);
    return;
  }
  if (inst.rafId !== null) return;
  inst.rafId = requestAnimationFrame(() => { inst.rafId = null; paint(inst); });
}

function visiblePlanes(inst) {
  return inst.layout === "1" ? [inst.main] : [inst.main, ...PLANES.filter((p) => p !== inst.main)];
}

function paint(inst) {
  const h = inst.header, d = inst.data;
  if (!h || !d || d.token !== h.token) return;
  lut(inst);
  const vis = visiblePlanes(inst);
  let drew = false;
  for (const p of vis) {
    if (!inst.dirty.has(p)) continue;
    const v = inst.views[p];
    if (p === "axial" && !d.decoded[inst.cursor.z]) { decodeSlice(inst, d, h, inst.blob, inst.cursor.z); continue; }
    planeSource(inst, v);
    planeImage(inst, v);
    drawView(inst, v);
    drew = true;
  }
  inst.dirty.clear();
  if (!drew) return;
  STATS.paints++;
  const now = performance.now();
  for (const [kind, t] of Object.entries(inst.pending)) pushLat(kind, now - t);
  inst.pending = {};
  if (d.rec.firstPaintT === null && d.decoded[inst.cursor.z]) {
    d.rec.firstPaintT = now;
    inst.ui.busy.hidden = true;
  }
  updateText(inst);
}

function drawView(inst, v) {
  const dpr = window.devicePixelRatio || 1;
  const g = v.ctx, cw = v.canvas.width, chh = v.canvas.height;
  g.setTransform(1, 0, 0, 1, 0, 0);
  g.fillStyle = "#000";
  g.fillRect(0, 0, cw, chh);
  const { dm, s } = viewScale(inst, v);
  const o = imgToCss(inst, v, 0, 0);
  const devPerVoxel = dm.sx * s * dpr;
  // Smooth when a voxel covers few screen pixels or is stretched (8 mm slices); crisp voxels when zoomed in.
  g.imageSmoothingEnabled = devPerVoxel < 3 || dm.sy / dm.sx > 1.5;
  g.setTransform(dm.sx * s * dpr, 0, 0, dm.sy * s * dpr, o.x * dpr, o.y * dpr);
  g.drawImage(v.off, 0, 0);
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  drawCrosshair(inst, v);
  drawMeasures(inst, v);
}

function drawCrosshair(inst, v) {
  const g = v.ctx, c = inst.cursor;
  if (inst.layout === "1" && !inst.header.crosshair_single) return;
  const p = pixelOfVoxel(inst, v.plane, c.z, c.r, c.c);
  const q = imgToCss(inst, v, p.x + 0.5, p.y + 0.5);
  // Vertical line = the plane whose index runs along x; horizontal = the one along y.
  const vert = v.plane === "sagittal" ? "coronal" : "sagittal";
  const horiz = v.plane === "axial" ? "coronal" : "axial";
  const gap = 8;
  g.lineWidth = 1;
  g.globalAlpha = 0.85;
  g.strokeStyle = PLANE_COLOR[vert];
  g.beginPath();
  g.moveTo(q.x, 0); g.lineTo(q.x, q.y - gap); g.moveTo(q.x, q.y + gap); g.lineTo(q.x, v.cssH);
  g.stroke();
  g.strokeStyle = PLANE_COLOR[horiz];
  g.beginPath();
  g.moveTo(0, q.y); g.lineTo(q.x - gap, q.y); g.moveTo(q.x + gap, q.y); g.lineTo(v.cssW, q.y);
  g.stroke();
  g.globalAlpha = 1;
}

function measureText(m) {
  if (m.kind === "line") return `${m.stats.length_mm.toFixed(1)} mm`;
  const s = m.stats;
  if (!s.n) return `${s.area_mm2.toFixed(1)} mm² (no voxel inside)`;
  return `${s.area_mm2.toFixed(1)} mm² · mean ${s.mean.toFixed(1)} · SD ${s.sd.toFixed(1)} · min ${s.min} · max ${s.max} HU`;
}

function drawMeasures(inst, v) {
  const g = v.ctx, idx = planeIndex(inst, v.plane);
  const all = inst.drag && inst.drag.measure ? inst.measures.concat([inst.drag.measure]) : inst.measures;
  for (const m of all) {
    if (m.plane !== v.plane || m.index !== idx) continue;
    const a = imgToCss(inst, v, m.p0[0], m.p0[1]), b = imgToCss(inst, v, m.p1[0], m.p1[1]);
    g.strokeStyle = m.id === inst.selected ? "#ffffff" : MEASURE_COLOR;
    g.fillStyle = MEASURE_COLOR;
    g.lineWidth = m.id === inst.selected ? 2 : 1.5;
    g.beginPath();
    if (m.kind === "line") {
      g.moveTo(a.x, a.y); g.lineTo(b.x, b.y);
      g.stroke();
      for (const p of [a, b]) { g.beginPath(); g.arc(p.x, p.y, 2.5, 0, 2 * Math.PI); g.fill(); }
    } else if (m.kind === "rect") {
      g.rect(Math.min(a.x, b.x), Math.min(a.y, b.y), Math.abs(b.x - a.x), Math.abs(b.y - a.y));
      g.stroke();
    } else {
      g.ellipse((a.x + b.x) / 2, (a.y + b.y) / 2, Math.abs(b.x - a.x) / 2, Math.abs(b.y - a.y) / 2, 0, 0, 2 * Math.PI);
      g.stroke();
    }
    if (m.stats) {
      const label = `${m.label || ""} ${measureText(m)}`.trim();
      g.font = "12px monospace";
      const tx = Math.max(a.x, b.x) + 6, ty = Math.min(a.y, b.y) - 4;
      const wdt = g.measureText(label).width;
      const x = Math.min(Math.max(2, tx), v.cssW - wdt - 4), y = Math.max(14, ty);
      g.fillStyle = "rgba(0,0,0,0.65)";
      g.fillRect(x - 2, y - 12, wdt + 4, 16);
      g.fillStyle = MEASURE_COLOR;
      g.fillText(label, x, y);
    }
  }
}

function fmtWin(w) {
  const name = w.name && PRESET_LABEL[w.name] ? PRESET_LABEL[w.name] + " " : "";
  return `${name}W ${Math.round(w.width)} / L ${Math.round(w.level)}`;
}
const PRESET_LABEL = { lung: "Lung", mediastinum: "Mediastinum", soft: "Soft tissue", bone: "Bone" };

function updateText(inst) {
  const h = inst.header, c = inst.cursor, ui = inst.ui;
  const slab = slabSlices(inst);
  for (const p of PLANES) {
    const v = inst.views[p];
    const idx = planeIndex(inst, p), n = planeCount(inst, p);
    v.tr.textContent = fmtWin(inst.win) + (inst.invert ? " · inv" : "");
    v.br.textContent = `${v.zoom.toFixed(2)}×`;
    if (p === "axial") {
      v.tl.textContent = h.study_label;
      const z = h.z_mm ? h.z_mm[idx] : null;
      const slabTxt = slab > 1 ? `\n${inst.slab.mode === "mip" ? "MIP" : "MinIP"} ${slab} slices (${(slab * spacing(inst).dz).toFixed(0)} mm)` : "";
      v.bl.textContent = `Slice ${idx + 1} / ${n}` + (z !== null && z !== undefined ? `\nz = ${z.toFixed(1)} mm` : "") + slabTxt;
      const area = h.lesion_mm2 ? h.lesion_mm2[idx] : null;
      // The quiz (anonymous) says nothing about masks: "no lesion mask" on some studies only would hint.
      const les = h.anonymous ? "" : (h.has_mask ? `lesion ${area ? area.toFixed(0) : 0} mm²` : "no lesion mask") + "\n";
      v.br.textContent = les + `${v.zoom.toFixed(2)}×`;
    } else {
      v.tl.textContent = PLANE_NAME[p];
      v.bl.textContent = `${p === "coronal" ? "Row" : "Column"} ${idx + 1} / ${n}`;
    }
  }
  ui.slider.value = String(c.z + 1);
  ui.root.dataset.slice = String(c.z);
  ui.root.dataset.row = String(c.r);
  ui.root.dataset.col = String(c.c);
  ui.root.dataset.level = String(inst.win.level);
  ui.root.dataset.width = String(inst.win.width);
  ui.root.dataset.stackKey = `${h.token}:${windowText(inst.win)}`;
  drawStrip(inst);
}

function windowText(w) {
  return w.name && PRESET_LABEL[w.name] ? w.name : `${Math.round(w.level)},${Math.round(w.width)}`;
}

function drawStrip(inst) {
  const h = inst.header, c = inst.ui.strip;
  if (!h) return;
  const w = Math.max(50, Math.round(c.clientWidth || 400)), hh = 46;
  if (c.width !== w) c.width = w;
  if (c.height !== hh) c.height = hh;
  const g = c.getContext("2d");
  g.clearRect(0, 0, w, hh);
  const n = h.n, bw = w / n;
  const areas = h.lesion_mm2;
  if (areas) {
    const max = Math.max(1, ...areas);
    g.fillStyle = (h.style && h.style.color) || "#ff3b30";
    for (let i = 0; i < n; i++) {
      if (areas[i] > 0) {
        const bh = Math.max(2, (areas[i] / max) * (hh - 4));
        g.fillRect(i * bw + 0.5, hh - bh, Math.max(1, bw - 1), bh);
      }
    }
  } else {
    g.fillStyle = "#888";
    g.font = "11px sans-serif";
    g.fillText(h.has_mask === false && h.anonymous ? "slice position" : "no lesion mask: the strip shows the slice position only", 6, 14);
  }
  g.fillStyle = PLANE_COLOR.axial;
  g.fillRect(inst.cursor.z * bw, 0, Math.max(2, bw), hh);
}

// ------------------------------------------------------------------------------------------ layout

function applyLayout(inst) {
  const ui = inst.ui, h = inst.header;
  if (h && inst.reportedMain !== inst.main) { inst.reportedMain = inst.main; scheduleReport(inst); syncUrl(inst); }
  const vis = visiblePlanes(inst);
  ui.stage.dataset.layout = inst.layout;
  for (const p of PLANES) {
    const v = inst.views[p];
    v.box.hidden = !vis.includes(p);
    v.box.classList.toggle("main", p === inst.main);
    v.box.classList.toggle("side", p !== inst.main);
    v.box.classList.toggle("active", p === inst.active);
  }
  const side = vis.filter((p) => p !== inst.main);
  side.forEach((p, i) => { inst.views[p].box.style.gridRow = String(i + 1); });
  inst.views[inst.main].box.style.gridRow = "1 / span 2";
  const fs = document.fullscreenElement === ui.root;
  const maxH = fs ? Math.max(200, window.innerHeight - ui.toolbar.offsetHeight - 130) : (h ? h.max_height || 600 : 600);
  ui.stage.style.height = `${Math.round(maxH)}px`;
  for (const [k, b] of Object.entries(ui.layoutBtns)) b.setAttribute("aria-pressed", String(k === inst.layout));
  for (const [k, b] of Object.entries(ui.viewBtns)) b.setAttribute("aria-pressed", String(k === inst.main));
  for (const [k, b] of Object.entries(ui.toolBtns)) b.setAttribute("aria-pressed", String(k === inst.tool));
  for (const [k, b] of Object.entries(ui.presetBtns)) b.setAttribute("aria-pressed", String(k === inst.win.name));
  ui.invertBtn.setAttribute("aria-pressed", String(inst.invert));
  ui.play.setAttribute("aria-pressed", String(inst.playing));
  ui.root.dataset.layout = inst.layout;
  ui.root.dataset.main = inst.main;
  ui.root.dataset.tool = inst.tool;
  ui.root.dataset.slab = inst.slab.mode;
  resizeCanvases(inst);
}

function resizeCanvases(inst) {
  const dpr = window.devicePixelRatio || 1;
  for (const p of visiblePlanes(inst)) {
    const v = inst.views[p];
    const r = v.box.getBoundingClientRect();
    const w = Math.max(1, Math.round(r.width)), hh = Math.max(1, Math.round(r.height));
    v.cssW = w;
    v.cssH = hh;
    if (v.canvas.width !== Math.round(w * dpr) || v.canvas.height !== Math.round(hh * dpr)) {
      v.canvas.width = Math.round(w * dpr);
      v.canvas.height = Math.round(hh * dpr);
    }
    v.canvas.style.width = `${w}px`;
    v.canvas.style.height = `${hh}px`;
  }
  invalidate(inst, PLANES);
}

// ------------------------------------------------------------------------------------------ actions

function setCursor(inst, z, r, c, opts = {}) {
  const h = inst.header;
  if (!h) return;
  const clamp = (v, n) => Math.min(Math.max(Math.round(v), 0), n - 1);
  const nz = clamp(z, h.n), nr = clamp(r, h.height), nc = clamp(c, h.width);
  const cur = inst.cursor;
  if (nz === cur.z && nr === cur.r && nc === cur.c && !opts.force) return false;
  const planes = [];
  if (nz !== cur.z) planes.push("axial");
  if (nr !== cur.r) planes.push("coronal");
  if (nc !== cur.c) planes.push("sagittal");
  const zChanged = nz !== cur.z;
  inst.cursor = { z: nz, r: nr, c: nc };
  inst.ui.root.dataset.slice = String(nz); // synchronous, for tests; the pixels follow in the next frame
  inst.ui.root.dataset.row = String(nr);
  inst.ui.root.dataset.col = String(nc);
  // Every visible view draws the crosshair, so all of them repaint.
  invalidate(inst, PLANES.concat(planes), opts.kind, opts.t);
  if (opts.user) {
    scheduleReport(inst);
    if (zChanged) syncUrl(inst);
    if (zChanged && h.link && !opts.fromLink) broadcast(inst, { slice: true });
  }
  return true;
}

function stepPlane(inst, plane, delta, opts) {
  const c = inst.cursor;
  if (plane === "axial") return setCursor(inst, c.z + delta, c.r, c.c, opts);
  if (plane === "coronal") return setCursor(inst, c.z, c.r - delta, c.c, opts); // toward anterior = "next"
  return setCursor(inst, c.z, c.r, c.c + delta, opts);
}

function gotoPlane(inst, plane, index, opts) {
  const c = inst.cursor;
  if (plane === "axial") return setCursor(inst, index, c.r, c.c, opts);
  if (plane === "coronal") return setCursor(inst, c.z, index, c.c, opts);
  return setCursor(inst, c.z, c.r, index, opts);
}

function setWindow(inst, level, width, name, opts = {}) {
  level = Math.min(Math.max(level, -2000), 5000);
  width = Math.min(Math.max(width, 1), 10000);
  inst.win = { level, width, name: name || null };
  lut(inst);
  invalidate(inst, PLANES, opts.kind, opts.t);
  applyPressed(inst);
  if (opts.user) {
    scheduleReport(inst);
    syncUrl(inst);
    if (inst.header && inst.header.link && !opts.fromLink) broadcast(inst, { window: true });
  }
}

function applyPressed(inst) {
  for (const [k, b] of Object.entries(inst.ui.presetBtns)) b.setAttribute("aria-pressed", String(k === inst.win.name));
}

function preset(inst, name, opts) {
  const p = (inst.header && inst.header.presets || {})[name];
  if (p) setWindow(inst, p.level, p.width, name, opts);
}

function setZoom(inst, v, zoom, cx, cy) {
  zoom = Math.min(Math.max(zoom, 0.2), 40);
  if (cx === undefined) { cx = v.cssW / 2; cy = v.cssH / 2; }
  // Keep the image point under (cx, cy) where it is.
  const k = zoom / v.zoom;
  v.panX = (cx - v.cssW / 2) - (cx - v.cssW / 2 - v.panX) * k;
  v.panY = (cy - v.cssH / 2) - (cy - v.cssH / 2 - v.panY) * k;
  v.zoom = zoom;
  invalidate(inst, [v.plane], "zoom");
  reportViewState(inst);
}

function fit(inst, v) { v.zoom = 1; v.panX = 0; v.panY = 0; invalidate(inst, [v.plane], "zoom"); reportViewState(inst); }

function oneToOne(inst, v) {
  const dm = planeDims(inst, v.plane);
  const fitS = Math.min(v.cssW / (dm.w * dm.sx), v.cssH / (dm.h * dm.sy));
  const dpr = window.devicePixelRatio || 1;
  v.zoom = 1 / (fitS * dm.sx * dpr); // one voxel column = one device pixel
  v.panX = 0; v.panY = 0;
  invalidate(inst, [v.plane], "zoom");
  reportViewState(inst);
}

function resetView(inst) {
  for (const p of PLANES) { const v = inst.views[p]; v.zoom = 1; v.panX = 0; v.panY = 0; }
  inst.invert = false;
  const d = inst.header && inst.header.window;
  if (d) setWindow(inst, d.initial_level ?? d.level, d.initial_width ?? d.width, d.initial_name ?? d.name, { user: true });
  invalidate(inst, PLANES, "zoom");
  applyLayout(inst);
  reportViewState(inst);
}

function reportViewState(inst) {
  const v = inst.views[inst.active];
  inst.ui.root.dataset.zoom = v.zoom.toFixed(4);
  inst.ui.root.dataset.pan = `${v.panX.toFixed(1)},${v.panY.toFixed(1)}`;
}

function setTool(inst, tool) {
  inst.tool = tool;
  applyLayout(inst);
}

function setSlab(inst, mode, mm) {
  if (mode !== undefined) inst.slab.mode = mode;
  if (mm !== undefined && isFinite(mm)) inst.slab.mm = Math.min(Math.max(mm, 1), 400);
  inst.ui.slabSel.value = inst.slab.mode;
  inst.ui.slabMm.value = String(Math.round(inst.slab.mm));
  inst.ui.root.dataset.slab = inst.slab.mode;
  inst.ui.root.dataset.slabSlices = String(slabSlices(inst));
  invalidate(inst, ["axial"]);
}

function togglePlay(inst, on) {
  inst.playing = on === undefined ? !inst.playing : on;
  inst.ui.play.textContent = inst.playing ? "Stop" : "Cine";
  inst.ui.play.setAttribute("aria-pressed", String(inst.playing));
  inst.ui.root.dataset.cine = inst.playing ? "1" : "0";
  if (!inst.playing) { scheduleReport(inst); return; }
  inst.playLast = performance.now();
  const step = (t) => {
    if (!inst.playing || !inst.ui.root.isConnected || !inst.header) { inst.playing = false; return; }
    const fps = Math.min(Math.max(Number(inst.ui.fps.value) || 8, 1), 30);
    if (t - inst.playLast >= 1000 / fps) {
      inst.playLast = t;
      const c = inst.cursor;
      setCursor(inst, (c.z + 1) % inst.header.n, c.r, c.c, { user: true });
    }
    requestAnimationFrame(step);
  };
  requestAnimationFrame(step);
}

function toggleFullscreen(inst) {
  const root = inst.ui.root;
  if (document.fullscreenElement === root) document.exitFullscreen().catch(() => {});
  else if (root.requestFullscreen) root.requestFullscreen().catch(() => {});
}

function toggleHelp(inst, show) {
  const h = inst.ui.help;
  h.hidden = show === undefined ? !h.hidden : !show;
  inst.ui.helpBtn.setAttribute("aria-pressed", String(!h.hidden));
}

// One table of actions: what every binding in bindings.json (and every toolbar button) calls.
const ACTIONS = {
  slice_next: (inst, o) => stepPlane(inst, inst.active, 1, o),
  slice_prev: (inst, o) => stepPlane(inst, inst.active, -1, o),
  slice_page_next: (inst, o) => stepPlane(inst, inst.active, Math.max(1, Math.round(planeCount(inst, inst.active) / 10)), o),
  slice_page_prev: (inst, o) => stepPlane(inst, inst.active, -Math.max(1, Math.round(planeCount(inst, inst.active) / 10)), o),
  slice_first: (inst, o) => gotoPlane(inst, inst.active, inst.active === "coronal" ? planeCount(inst, "coronal") - 1 : 0, o),
  slice_last: (inst, o) => gotoPlane(inst, inst.active, inst.active === "coronal" ? 0 : planeCount(inst, inst.active) - 1, o),
  preset_lung: (inst, o) => preset(inst, "lung", o),
  preset_mediastinum: (inst, o) => preset(inst, "mediastinum", o),
  preset_soft: (inst, o) => preset(inst, "soft", o),
  preset_bone: (inst, o) => preset(inst, "bone", o),
  invert: (inst) => { inst.invert = !inst.invert; lut(inst); invalidate(inst, PLANES); applyLayout(inst); },
  zoom_in: (inst) => setZoom(inst, inst.views[inst.active], inst.views[inst.active].zoom * 1.25),
  zoom_out: (inst) => setZoom(inst, inst.views[inst.active], inst.views[inst.active].zoom / 1.25),
  fit: (inst) => fit(inst, inst.views[inst.active]),
  one_to_one: (inst) => oneToOne(inst, inst.views[inst.active]),
  reset: (inst) => resetView(inst),
  pan_key: (inst, o, e) => {
    const v = inst.views[inst.active], step = 24;
    const d = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] }[e ? e.key : ""] || [0, 0];
    v.panX += d[0]; v.panY += d[1];
    invalidate(inst, [v.plane], "zoom");
    reportViewState(inst);
  },
  cine: (inst) => togglePlay(inst),
  next_view: (inst) => { const i = PLANES.indexOf(inst.main); inst.main = inst.active = PLANES[(i + 1) % 3]; applyLayout(inst); },
  layout: (inst) => { inst.layout = inst.layout === "1" ? "1+2" : "1"; applyLayout(inst); },
  fullscreen: (inst) => toggleFullscreen(inst),
  tool_crosshair: (inst) => setTool(inst, "crosshair"),
  tool_wl: (inst) => setTool(inst, "wl"),
  tool_pan: (inst) => setTool(inst, "pan"),
  tool_zoom: (inst) => setTool(inst, "zoom"),
  tool_line: (inst) => setTool(inst, "line"),
  tool_ellipse: (inst) => setTool(inst, "ellipse"),
  tool_rect: (inst) => setTool(inst, "rect"),
  delete_measure: (inst) => {
    const id = inst.selected !== null ? inst.selected : inst.measures.length ? inst.measures[inst.measures.length - 1].id : null;
    if (id !== null) deleteMeasure(inst, id);
  },
  slab_cycle: (inst) => setSlab(inst, { off: "mip", mip: "minip", minip: "off" }[inst.slab.mode]),
  slab_thicker: (inst) => setSlab(inst, inst.slab.mode === "off" ? "mip" : undefined, (slabSlices(inst) + 1) * spacing(inst).dz),
  slab_thinner: (inst) => setSlab(inst, undefined, Math.max(1, slabSlices(inst) - 1) * spacing(inst).dz),
  help: (inst) => toggleHelp(inst),
  cancel: (inst) => { if (inst.drag && inst.drag.measure) inst.drag = null; inst.selected = null; setTool(inst, "crosshair"); invalidate(inst, PLANES); },
};

function keyMap(bindings) {
  const map = new Map();
  for (const b of (bindings && bindings.keys) || []) for (const k of b.keys) map.set(k, b.action);
  return map;
}

function comboOf(e) {
  const k = e.key;
  // Shift changes printable keys themselves ("F", "+", "?"): only named keys carry a Shift+ prefix.
  return (e.shiftKey && k.length > 1 ? "Shift+" : "") + k;
}

// ------------------------------------------------------------------------------------------ measurements

function regionStats(inst, m) {
  const dm = planeDims(inst, m.plane);
  const x0 = Math.min(m.p0[0], m.p1[0]), x1 = Math.max(m.p0[0], m.p1[0]);
  const y0 = Math.min(m.p0[1], m.p1[1]), y1 = Math.max(m.p0[1], m.p1[1]);
  const rx = (x1 - x0) / 2, ry = (y1 - y0) / 2, cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  const area = m.kind === "rect" ? (x1 - x0) * dm.sx * (y1 - y0) * dm.sy : Math.PI * rx * dm.sx * ry * dm.sy;
  let n = 0, sum = 0, sum2 = 0, mn = Infinity, mx = -Infinity;
  const d = inst.data;
  for (let y = Math.max(0, Math.floor(y0)); y <= Math.min(dm.h - 1, Math.ceil(y1)); y++) {
    for (let x = Math.max(0, Math.floor(x0)); x <= Math.min(dm.w - 1, Math.ceil(x1)); x++) {
      const px = x + 0.5, py = y + 0.5; // a voxel counts when its centre is inside
      if (m.kind === "rect") { if (px < x0 || px > x1 || py < y0 || py > y1) continue; }
      else if (rx <= 0 || ry <= 0 || ((px - cx) / rx) ** 2 + ((py - cy) / ry) ** 2 > 1) continue;
      const vx = voxelOf(inst, m.plane, m.index, x, y);
      const hu = d.vol[vx.z * d.HW + vx.r * d.W + vx.c];
      n++; sum += hu; sum2 += hu * hu;
      if (hu < mn) mn = hu;
      if (hu > mx) mx = hu;
    }
  }
  const mean = n ? sum / n : 0;
  const sd = n > 1 ? Math.sqrt(Math.max(0, (sum2 - n * mean * mean) / (n - 1))) : 0;
  return { area_mm2: area, n, mean, sd, min: n ? mn : null, max: n ? mx : null };
}

function measureStats(inst, m) {
  if (m.kind === "line") {
    const dm = planeDims(inst, m.plane);
    return { length_mm: Math.hypot((m.p1[0] - m.p0[0]) * dm.sx, (m.p1[1] - m.p0[1]) * dm.sy) };
  }
  return regionStats(inst, m);
}

function addMeasure(inst, m) {
  if (inst.measures.length >= MAX_MEASURES) inst.measures.shift();
  m.id = inst.nextMeasureId++;
  m.stats = measureStats(inst, m);
  inst.measures.push(m);
  inst.selected = m.id;
  measuresChanged(inst);
}

function deleteMeasure(inst, id) {
  inst.measures = inst.measures.filter((m) => m.id !== id);
  if (inst.selected === id) inst.selected = null;
  measuresChanged(inst);
}

function relabel(inst) {
  const count = { line: 0, ellipse: 0, rect: 0 };
  const name = { line: "Line", ellipse: "Ellipse", rect: "Rectangle" };
  for (const m of inst.measures) m.label = `${name[m.kind]} ${++count[m.kind]}`;
}

function measuresChanged(inst, fromHeader) {
  relabel(inst);
  if (inst.token) inst.measureByToken.set(inst.token, inst.measures);
  renderMeasureList(inst);
  invalidate(inst, PLANES);
  if (!fromHeader) {
    clearTimeout(inst.measureTimer);
    inst.measureTimer = setTimeout(() => {
      const h = inst.header;
      if (!h || !h.report_measures) return;
      inst.api.setStateValue("measures", { token: h.token, study: h.study_id,
        items: inst.measures.map((m) => ({ kind: m.kind, plane: m.plane, index: m.index, p0: m.p0, p1: m.p1 })) });
    }, 300);
  }
}

function renderMeasureList(inst) {
  const ui = inst.ui;
  ui.measures.textContent = "";
  ui.mEmpty.hidden = inst.measures.length > 0;
  ui.root.dataset.measures = String(inst.measures.length);
  for (const m of inst.measures) {
    const li = el("li", m.id === inst.selected ? "sel" : "", ui.measures);
    li.dataset.kind = m.kind;
    li.dataset.id = String(m.id);
    if (m.kind === "line") li.dataset.lengthMm = m.stats.length_mm.toFixed(3);
    else {
      li.dataset.areaMm2 = m.stats.area_mm2.toFixed(3);
      li.dataset.mean = m.stats.mean.toFixed(3);
      li.dataset.sd = m.stats.sd.toFixed(3);
      li.dataset.min = String(m.stats.min);
      li.dataset.max = String(m.stats.max);
      li.dataset.n = String(m.stats.n);
    }
    const where = `${PLANE_NAME[m.plane]} ${m.index + 1}`;
    const go = btn(li, `${m.label} · ${where} · ${measureText(m)}`, `Go to ${m.label}`, "msv-mgo");
    go.addEventListener("click", () => {
      inst.selected = m.id;
      gotoPlane(inst, m.plane, m.index, { user: true });
      if (inst.main !== m.plane && inst.layout === "1") { inst.main = inst.active = m.plane; applyLayout(inst); }
      renderMeasureList(inst);
      invalidate(inst, PLANES);
    });
    const del = btn(li, "×", `Delete ${m.label}`, "msv-mdel");
    del.addEventListener("click", () => deleteMeasure(inst, m.id));
  }
}

function restoreMeasures(inst, items) {
  inst.measures = [];
  for (const it of items || []) {
    if (!it || !["line", "ellipse", "rect"].includes(it.kind) || !PLANES.includes(it.plane)) continue;
    if (!(it.index >= 0 && it.index < planeCount(inst, it.plane))) continue;
    const m = { kind: it.kind, plane: it.plane, index: it.index, p0: it.p0, p1: it.p1, id: inst.nextMeasureId++ };
    m.stats = measureStats(inst, m);
    inst.measures.push(m);
  }
  measuresChanged(inst, true);
}

// ------------------------------------------------------------------------------------------ export

function exportPng(inst) {
  const ui = inst.ui, h = inst.header;
  const sr = ui.stage.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  const lines = [h.study_label + " · " + fmtWin(inst.win)].concat(inst.measures.map((m) =>
    `${m.label} · ${PLANE_NAME[m.plane]} ${m.index + 1} · ${measureText(m)}`));
  const lineH = 18;
  const out = document.createElement("canvas");
  out.width = Math.round(sr.width * dpr);
  out.height = Math.round((sr.height + 10 + lines.length * lineH) * dpr);
  const g = out.getContext("2d");
  g.scale(dpr, dpr);
  g.fillStyle = "#000";
  g.fillRect(0, 0, sr.width, sr.height + 10 + lines.length * lineH);
  for (const p of visiblePlanes(inst)) {
    const v = inst.views[p], r = v.box.getBoundingClientRect();
    g.drawImage(v.canvas, r.left - sr.left, r.top - sr.top, r.width, r.height);
    g.fillStyle = "#ffd60a";
    g.font = "600 14px monospace";
    const [t, b, l, rr] = PLANE_LABELS[p];
    const x0 = r.left - sr.left, y0 = r.top - sr.top;
    g.fillText(t, x0 + r.width / 2 - 4, y0 + 16);
    g.fillText(b, x0 + r.width / 2 - 4, y0 + r.height - 6);
    g.fillText(l, x0 + 6, y0 + r.height / 2);
    g.fillText(rr, x0 + r.width - 14, y0 + r.height / 2);
    g.fillStyle = "#fff";
    g.font = "12px monospace";
    const idx = planeIndex(inst, p);
    g.fillText(`${PLANE_NAME[p]} ${idx + 1} / ${planeCount(inst, p)}`, x0 + 6, y0 + r.height - 22);
  }
  g.fillStyle = "#ddd";
  g.font = "13px monospace";
  lines.forEach((t, i) => g.fillText(t, 6, sr.height + 10 + (i + 0.8) * lineH));
  out.toBlob((blob) => {
    if (!blob) return;
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = h.export_name || "view.png";
    document.body.appendChild(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }, "image/png");
}

// ------------------------------------------------------------------------------------------ reports, URL, links

function scheduleReport(inst) {
  clearTimeout(inst.reportTimer);
  // Every setStateValue reruns the script (or fragment): report only once the user has paused.
  inst.reportTimer = setTimeout(() => {
    const h = inst.header;
    if (!h || inst.playing || inst.drag) { if (inst.drag) scheduleReport(inst); return; }
    const w = inst.win;
    // The crosshair (row, column) is reported only when Python asks for it (a class's presenter): elsewhere a
    // click that moves it alone must not rerun the page.
    const rc = h.report_cursor ? `|${inst.cursor.r}|${inst.cursor.c}` : "";
    const key = `${h.token}|${inst.cursor.z}|${w.level}|${w.width}|${w.name}|${inst.main}${rc}`;
    if (inst.lastReported === key) return;
    inst.lastReported = key;
    const view = { token: h.token, study: h.study_id, slice: inst.cursor.z,
                   level: w.level, width: w.width, name: w.name || null, plane: inst.main };
    if (h.report_cursor) { view.row = inst.cursor.r; view.col = inst.cursor.c; }
    inst.api.setStateValue("view", view);
  }, (inst.header && inst.header.debounce_ms) || 400);
}

// The viewer page's own link (study, slice, window, plane) follows the view at once, without a rerun.
function syncUrl(inst) {
  const h = inst.header;
  if (!h || !h.url_params) return;
  try {
    const u = new URL(window.location.href);
    for (const [k, v] of Object.entries(h.url_params)) u.searchParams.set(k, v);
    u.searchParams.set("slice", String(inst.cursor.z + 1));
    u.searchParams.set("window", windowText(inst.win));
    if (u.searchParams.has("plane")) u.searchParams.set("plane", inst.main);
    if (u.href !== window.location.href) window.history.replaceState(window.history.state, "", u.href);
  } catch (e) { /* the address bar is a convenience: never break the viewer for it */ }
}

function broadcast(inst, what) {
  const h = inst.header;
  const z = h.z_mm ? h.z_mm[inst.cursor.z] : null;
  window.dispatchEvent(new CustomEvent(LINK_EVENT, { detail: {
    group: h.link.group, source: inst.id, frac: h.n > 1 ? inst.cursor.z / (h.n - 1) : 0,
    mm: z, anchor: inst.linkAnchor, slice: !!what.slice, window: what.window ? { ...inst.win } : null } }));
}

function onLink(inst, e) {
  const d = e.detail, h = inst.header;
  if (!h || !h.link || d.group !== h.link.group || d.source === inst.id || !inst.data) return;
  if (d.window) setWindow(inst, d.window.level, d.window.width, d.window.name, { user: true, fromLink: true });
  if (!d.slice) return;
  let k;
  if (h.link.mode === "mm" && d.mm !== null && d.anchor !== null && h.z_mm && inst.linkAnchor !== null) {
    // Same displacement in mm from where both viewers started (two patients' table positions differ).
    const target = inst.linkAnchor + (d.mm - d.anchor);
    let best = 0;
    for (let i = 1; i < h.n; i++) if (Math.abs(h.z_mm[i] - target) < Math.abs(h.z_mm[best] - target)) best = i;
    k = best;
  } else {
    k = Math.round(d.frac * (h.n - 1));
  }
  const c = inst.cursor;
  setCursor(inst, k, c.r, c.c, { user: true, fromLink: true });
}

// Ask Python for the data of `token`, again every 1.6 s until it is here (a request whose rerun was
// interrupted by another one must not leave the viewer waiting for ever).
function requestData(inst, token, part) {
  const now = performance.now();
  clearTimeout(inst.needTimer);
  if (inst.needKey !== `${token}|${part}` || now - (inst.needT || 0) > 1500) {
    inst.needKey = `${token}|${part}`;
    inst.needT = now;
    STATS.needs++;
    inst.api.setStateValue("need", { key: token, part: part || null, token: Math.random().toString(36).slice(2) });
  }
  inst.needTimer = setTimeout(() => {
    const d = inst.data;
    const missing = !d || d.token !== token || d.partial;
    if (inst.wantToken === token && missing && inst.ui.root.isConnected) requestData(inst, token, part);
  }, 1600);
}

// ------------------------------------------------------------------------------------------ input

function hover(inst, v, e) {
  const h = inst.header, d = inst.data;
  if (!h || !d) return;
  const t = evT(e);
  const p = eventCss(v, e);
  const q = cssToImg(inst, v, p.x, p.y);
  const dm = planeDims(inst, v.plane);
  const x = Math.floor(q.x), y = Math.floor(q.y);
  const ro = inst.ui.readout;
  if (x < 0 || y < 0 || x >= dm.w || y >= dm.h) {
    ro.textContent = "Point at the image for HU, voxel and position";
    ro.dataset.hu = "";
    return;
  }
  const vx = voxelOf(inst, v.plane, planeIndex(inst, v.plane), x, y);
  if (!d.decoded[vx.z]) { ro.textContent = "loading…"; return; }
  const hu = d.vol[vx.z * d.HW + vx.r * d.W + vx.c];
  const s = spacing(inst);
  const zmm = h.z_mm ? h.z_mm[vx.z] : vx.z * s.dz;
  let where = "";
  if (d.lab && !h.anonymous) {
    const l = d.lab[vx.z * d.HW + vx.r * d.W + vx.c];
    where = (l & 2 ? " · lung" : "") + (l & 1 ? " · lesion" : "");
  }
  ro.textContent = `${hu} HU · voxel z ${vx.z + 1}, row ${vx.r + 1}, col ${vx.c + 1} · ` +
    `x ${(vx.c * s.dx).toFixed(1)} mm, y ${(vx.r * s.dy).toFixed(1)} mm, z ${zmm.toFixed(1)} mm` + where;
  Object.assign(ro.dataset, { hu: String(hu), z: String(vx.z), row: String(vx.r), col: String(vx.c), plane: v.plane });
  pushLat("hover", performance.now() - t);
}

function mouseAction(inst, e, input) {
  const mods = [];
  if (e.ctrlKey || e.metaKey) mods.push("ctrl");
  if (e.shiftKey) mods.push("shift");
  if (e.altKey) mods.push("alt");
  const want = mods.join("+");
  const list = (inst.header && inst.header.bindings && inst.header.bindings.mouse) || [];
  for (const b of list) {
    if (b.input !== input) continue;
    if (input !== "wheel" && b.button !== e.button) continue;
    if ((b.mods || []).join("+") === want) return b.action;
  }
  return null;
}

function wireView(inst, v) {
  const c = v.canvas;
  c.addEventListener("contextmenu", (e) => e.preventDefault());
  c.addEventListener("pointerdown", (e) => {
    if (!inst.header || !inst.data) return;
    inst.ui.root.focus({ preventScroll: true });
    if (inst.active !== v.plane) { inst.active = v.plane; applyLayout(inst); }
    let action = mouseAction(inst, e, "drag");
    if (action === null) return;
    e.preventDefault();
    if (action === "tool") action = { crosshair: "crosshair", wl: "window_level", pan: "pan", zoom: "zoom_drag" }[inst.tool] || "measure";
    c.setPointerCapture(e.pointerId);
    const p = eventCss(v, e);
    inst.drag = { action, view: v, x0: p.x, y0: p.y, x: p.x, y: p.y, level: inst.win.level, width: inst.win.width,
                  panX: v.panX, panY: v.panY, zoom: v.zoom };
    if (action === "crosshair") crosshairAt(inst, v, p, evT(e));
    if (action === "measure") {
      const q = cssToImg(inst, v, p.x, p.y);
      inst.drag.measure = { kind: inst.tool, plane: v.plane, index: planeIndex(inst, v.plane), p0: [q.x, q.y], p1: [q.x, q.y] };
    }
  });
  c.addEventListener("pointermove", (e) => {
    hover(inst, v, e);
    const dr = inst.drag;
    if (!dr || dr.view !== v) return;
    const p = eventCss(v, e), t = evT(e);
    const dx = p.x - dr.x0, dy = p.y - dr.y0;
    if (dr.action === "window_level") {
      // Right / left = wider / narrower, down / up = higher / lower level; faster for wide windows.
      const k = Math.max(1, dr.width / 300);
      setWindow(inst, dr.level + dy * k, dr.width + dx * k, null, { user: true, kind: "wl_frame", t });
    } else if (dr.action === "pan") {
      v.panX = dr.panX + dx; v.panY = dr.panY + dy;
      invalidate(inst, [v.plane], "zoom", t);
      reportViewState(inst);
    } else if (dr.action === "zoom_drag") {
      setZoom(inst, v, dr.zoom * Math.exp(-(p.y - dr.y) / 150), dr.x0, dr.y0);
      dr.zoom = v.zoom; dr.y = p.y;
    } else if (dr.action === "crosshair") {
      crosshairAt(inst, v, p, t);
    } else if (dr.action === "measure" && dr.measure) {
      const q = cssToImg(inst, v, p.x, p.y);
      dr.measure.p1 = [q.x, q.y];
      invalidate(inst, [v.plane]);
    }
  });
  const end = (e) => {
    const dr = inst.drag;
    if (!dr || dr.view !== v) return;
    inst.drag = null;
    try { c.releasePointerCapture(e.pointerId); } catch (err) { /* already released */ }
    if (dr.action === "measure" && dr.measure) {
      const m = dr.measure, dm = planeDims(inst, v.plane);
      const big = Math.hypot((m.p1[0] - m.p0[0]) * dm.sx, (m.p1[1] - m.p0[1]) * dm.sy) > 0.5;
      if (big) addMeasure(inst, m);
      invalidate(inst, [v.plane]);
    }
    if (dr.action === "window_level") scheduleReport(inst);
  };
  c.addEventListener("pointerup", end);
  c.addEventListener("pointercancel", end);
  c.addEventListener("pointerleave", () => { if (!inst.drag) { inst.ui.readout.dataset.hu = ""; } });
  c.addEventListener("dblclick", (e) => {
    if (mouseAction(inst, e, "dblclick") !== "maximize") return;
    if (inst.layout === "1" && inst.main === v.plane) inst.layout = "1+2";
    else { inst.layout = "1"; inst.main = inst.active = v.plane; }
    applyLayout(inst);
  });
  c.addEventListener("wheel", (e) => {
    if (!inst.header || !inst.data) return;
    e.preventDefault();
    const action = mouseAction(inst, e, "wheel");
    const px = e.deltaMode === 1 ? e.deltaY * 33 : e.deltaMode === 2 ? e.deltaY * 400 : e.deltaY;
    if (action === "zoom_pointer") {
      const p = eventCss(v, e);
      setZoom(inst, v, v.zoom * Math.exp(-px / 500), p.x, p.y);
      return;
    }
    if (action !== "scroll") return;
    let steps = 0;
    if (Math.abs(px) >= 50) { steps = Math.sign(px); inst.wheelAcc = 0; } // one mouse-wheel notch = one slice
    else {
      inst.wheelAcc += px; // trackpads send many small deltas
      if (Math.abs(inst.wheelAcc) >= 50) { steps = Math.sign(inst.wheelAcc); inst.wheelAcc = 0; }
    }
    if (steps) {
      if (inst.active !== v.plane) { inst.active = v.plane; applyLayout(inst); }
      stepPlane(inst, v.plane, -steps, { user: true, kind: "scroll_wheel", t: evT(e) }); // wheel down = down the body
    }
  }, { passive: false });
}

function crosshairAt(inst, v, p, t) {
  const q = cssToImg(inst, v, p.x, p.y);
  const dm = planeDims(inst, v.plane);
  const x = Math.min(Math.max(Math.floor(q.x), 0), dm.w - 1), y = Math.min(Math.max(Math.floor(q.y), 0), dm.h - 1);
  const vx = voxelOf(inst, v.plane, planeIndex(inst, v.plane), x, y);
  setCursor(inst, vx.z, vx.r, vx.c, { user: true, kind: "mpr", t });
}

function wire(inst) {
  const ui = inst.ui;
  for (const p of PLANES) wireView(inst, inst.views[p]);
  ui.root.addEventListener("keydown", (e) => {
    const h = inst.header;
    if (!h || !inst.data) return;
    const tag = (e.target && e.target.tagName) || "";
    if ((tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") && e.key !== "Escape") return;
    if (e.ctrlKey || e.metaKey || e.altKey) return; // browser and system shortcuts stay theirs
    const action = inst.keys.get(comboOf(e));
    if (!action || !ACTIONS[action]) return;
    e.preventDefault();
    e.stopPropagation(); // Streamlit's own shortcuts (r: rerun, c: clear caches) never see the viewer's keys
    const kind = action.startsWith("slice_") ? "scroll_key" : action.startsWith("preset_") ? "window" : undefined;
    ACTIONS[action](inst, { user: true, kind, t: evT(e) }, e);
  });
  const click = (b, action) => b.addEventListener("click", (e) => { ACTIONS[action](inst, { user: true, t: evT(e) }, e); });
  ui.layoutBtns["1"].addEventListener("click", () => { inst.layout = "1"; applyLayout(inst); });
  ui.layoutBtns["1+2"].addEventListener("click", () => { inst.layout = "1+2"; applyLayout(inst); });
  for (const p of PLANES) ui.viewBtns[p].addEventListener("click", () => { inst.main = inst.active = p; applyLayout(inst); });
  for (const [id, b] of Object.entries(ui.toolBtns)) b.addEventListener("click", () => setTool(inst, id));
  for (const id of Object.keys(ui.presetBtns)) click(ui.presetBtns[id], "preset_" + id);
  click(ui.invertBtn, "invert");
  click(ui.zoomIn, "zoom_in");
  click(ui.zoomOut, "zoom_out");
  click(ui.fitBtn, "fit");
  click(ui.oneBtn, "one_to_one");
  click(ui.resetBtn, "reset");
  click(ui.fullBtn, "fullscreen");
  click(ui.helpBtn, "help");
  ui.pngBtn.addEventListener("click", () => exportPng(inst));
  ui.slabSel.addEventListener("change", () => setSlab(inst, ui.slabSel.value));
  ui.slabMm.addEventListener("change", () => setSlab(inst, undefined, Number(ui.slabMm.value)));
  ui.slider.addEventListener("input", () => { const c = inst.cursor; setCursor(inst, Number(ui.slider.value) - 1, c.r, c.c, { user: true }); });
  ui.prev.addEventListener("click", () => stepPlane(inst, "axial", -1, { user: true }));
  ui.next.addEventListener("click", () => stepPlane(inst, "axial", 1, { user: true }));
  click(ui.play, "cine");
  const lesion = (dir) => {
    const a = inst.header && inst.header.lesion_mm2;
    if (!a) return;
    for (let i = inst.cursor.z + dir; i >= 0 && i < a.length; i += dir) {
      if (a[i] > 0) { const c = inst.cursor; setCursor(inst, i, c.r, c.c, { user: true }); return; }
    }
  };
  ui.lesPrev.addEventListener("click", () => lesion(-1));
  ui.lesNext.addEventListener("click", () => lesion(1));
  ui.strip.addEventListener("click", (e) => {
    const h = inst.header;
    if (!h) return;
    const r = ui.strip.getBoundingClientRect(), c = inst.cursor;
    setCursor(inst, Math.floor((e.clientX - r.left) / r.width * h.n), c.r, c.c, { user: true });
  });
  inst.onLink = (e) => onLink(inst, e);
  window.addEventListener(LINK_EVENT, inst.onLink);
  inst.onResize = () => { applyLayout(inst); drawStrip(inst); };
  window.addEventListener("resize", inst.onResize);
  inst.onFs = () => applyLayout(inst);
  document.addEventListener("fullscreenchange", inst.onFs);
  if (window.ResizeObserver) {
    inst.resizeObs = new ResizeObserver(() => resizeCanvases(inst));
    inst.resizeObs.observe(ui.stage);
  }
}

function renderHelp(inst) {
  const b = inst.header.bindings || {}, names = b.key_names || {};
  const ui = inst.ui;
  ui.help.textContent = "";
  el("div", "msv-mtitle", ui.help, "Mouse and keyboard (keys act while the viewer has focus)");
  const tbl = el("table", "msv-keys", ui.help);
  for (const m of b.mouse || []) {
    const tr = el("tr", "", tbl);
    el("td", "", tr, m.label.split(":")[0]);
    el("td", "", tr, m.label.split(":").slice(1).join(":").trim());
  }
  for (const k of b.keys || []) {
    const tr = el("tr", "", tbl);
    tr.dataset.action = k.action;
    el("td", "", tr, k.keys.map((x) => names[x] || x).join(" / "));
    el("td", "", tr, k.label);
  }
}

// Read-only helpers for browser tests and benchmarks (no state changes go through here).
function apiFor(inst) {
  return {
    voxelToClient(plane, x, y) { // image pixel centre (x, y) of a plane -> viewport coordinates
      const v = inst.views[plane];
      const q = imgToCss(inst, v, x + 0.5, y + 0.5);
      const r = v.canvas.getBoundingClientRect();
      return { x: r.left + q.x, y: r.top + q.y };
    },
    state() {
      const c = inst.cursor, v = inst.views[inst.active];
      return { cursor: { ...c }, window: { ...inst.win }, tool: inst.tool, layout: inst.layout, main: inst.main,
               active: inst.active, zoom: v.zoom, pan: [v.panX, v.panY], slab: { ...inst.slab },
               slabSlices: slabSlices(inst), ready: !!(inst.data && inst.data.ready),
               measures: inst.measures.map((m) => ({ kind: m.kind, plane: m.plane, index: m.index, stats: m.stats })) };
    },
    shown(plane, x, y) { // the HU the view shows at image pixel (x, y): the slice's, or the slab's MIP / MinIP
      const v = inst.views[plane];
      return v.src ? v.src[y * planeDims(inst, plane).w + x] : null;
    },
    pixel(plane, x, y) { // the painted RGBA at image pixel (x, y) of a plane
      const v = inst.views[plane];
      const q = imgToCss(inst, v, x + 0.5, y + 0.5);
      const dpr = window.devicePixelRatio || 1;
      return Array.from(v.ctx.getImageData(Math.floor(q.x * dpr), Math.floor(q.y * dpr), 1, 1).data);
    },
  };
}

export default function (component) {
  const { data, parentElement, setStateValue, setTriggerValue } = component;
  STATS.lastRender = performance.now();
  let inst = INSTANCES.get(parentElement);
  if (!inst) {
    inst = makeInstance(parentElement);
    INSTANCES.set(parentElement, inst);
    const mine = inst;
    inst.cleanup = () => {
      clearTimeout(mine.reportTimer);
      clearTimeout(mine.needTimer);
      clearTimeout(mine.measureTimer);
      clearTimeout(mine.pollTimer);
      mine.playing = false;
      window.removeEventListener(LINK_EVENT, mine.onLink);
      window.removeEventListener("resize", mine.onResize);
      document.removeEventListener("fullscreenchange", mine.onFs);
      if (mine.resizeObs) mine.resizeObs.disconnect();
      if (INSTANCES.get(parentElement) === mine) INSTANCES.delete(parentElement);
    };
  }
  inst.api = { setStateValue, setTriggerValue };
  let parsed;
  try {
    parsed = parsePayload(data);
  } catch (err) {
    inst.ui.readout.textContent = String(err.message || err);
    return inst.cleanup;
  }
  const { header, blob } = parsed;
  inst.wantToken = header.token;
  STATS.renders++;
  const haveData = inst.data && inst.data.token === header.token;
  if (header.light) {
    STATS.lightRenders++;
    if (!haveData) {
      // Python believes we hold this study but we do not (remounted, or its message was lost): ask for it.
      requestData(inst, header.token);
      return inst.cleanup;
    }
  }
  const prev = inst.header;
  const newStudy = !prev || prev.token !== header.token;
  // Geometry (slice references) comes with the data only; a light header keeps the one we decoded from.
  if (header.light && prev) {
    header.slices = prev.slices; header.labels = prev.labels; header.crop = prev.crop; header.fill = prev.fill;
    header.partial = prev.partial;
  }
  inst.header = header;
  inst.showLabels = true;
  inst.keys = keyMap(header.bindings);
  const ui = inst.ui;
  ui.root.dataset.n = String(header.n);
  ui.root.dataset.token = header.token;
  ui.slider.max = String(header.n);
  ui.slider.disabled = header.n < 2;
  ui.play.disabled = header.n < 2;
  const hasLesion = !!(header.lesion_mm2 && header.lesion_mm2.some((a) => a > 0));
  ui.lesPrev.disabled = ui.lesNext.disabled = !hasLesion;
  ui.lesPrev.hidden = ui.lesNext.hidden = !!header.anonymous;
  ui.pngBtn.disabled = false;
  if (newStudy) renderHelp(inst);
  // Python-side navigation (new study, URL, a jump) and window apply only when their sequence changes.
  const nav = header.nav || { slice: 0, seq: 0 };
  const cur = inst.cursor;
  if (newStudy) {
    const rc = header.cursor || [Math.floor(header.height / 2), Math.floor(header.width / 2)];
    inst.cursor = { z: Math.min(Math.max(nav.slice, 0), header.n - 1), r: rc[0], c: rc[1] };
    inst.navSeq = nav.seq;
    inst.linkAnchor = header.z_mm ? header.z_mm[inst.cursor.z] : null;
    for (const p of PLANES) { const v = inst.views[p]; v.zoom = 1; v.panX = 0; v.panY = 0; v.srcKey = v.imgKey = null; }
  } else if (inst.navSeq !== nav.seq) {
    inst.navSeq = nav.seq;
    setCursor(inst, nav.slice, cur.r, cur.c);
  }
  // A crosshair Python asks for (a class following its presenter) applies when its sequence changes.
  if (newStudy) {
    inst.cursorSeq = header.cursor_seq;
  } else if (header.cursor_seq && inst.cursorSeq !== header.cursor_seq && header.cursor) {
    inst.cursorSeq = header.cursor_seq;
    setCursor(inst, inst.cursor.z, header.cursor[0], header.cursor[1]);
  }
  if (inst.planeSeq !== header.plane_seq) {
    inst.planeSeq = header.plane_seq;
    inst.layout = header.layout || "1+2";
    inst.main = inst.active = header.plane || "axial";
    inst.reportedMain = inst.main;
  }
  const w = header.window;
  if (w && (newStudy || inst.winSeq !== w.seq)) {
    inst.winSeq = w.seq;
    setWindow(inst, w.level, w.width, w.name);
  }
  if (prev && JSON.stringify(prev.style) !== JSON.stringify(header.style)) invalidate(inst, PLANES);
  applyLayout(inst);
  syncUrl(inst);
  if (!header.light && header.data_url && inst.dataSeq !== header.data_seq && !(haveData && inst.data.ready)) {
    inst.token = header.token;
    inst.dataSeq = header.data_seq;
    fetchData(inst, header).catch((err) => { ui.readout.textContent = "decode failed: " + err; });
  } else if (!header.light && !header.data_url && (!haveData || newStudy)) {
    inst.token = header.token;
    inst.blob = blob;
    ui.busy.hidden = false;
    loadData(inst, header, blob).catch((err) => { ui.readout.textContent = "decode failed: " + err; });
  } else if (!header.light && haveData && inst.data.partial && !header.partial) {
    clearTimeout(inst.needTimer);
    inst.blob = blob; // the whole study: the slices not decoded yet come from it
    loadData(inst, header, blob, true).catch((err) => { ui.readout.textContent = "decode failed: " + err; });
  }
  // While Python waits for something (a study's cache entry building), it asks to be rerun now and then.
  clearTimeout(inst.pollTimer);
  if (header.poll_ms) {
    inst.pollTimer = setTimeout(() => {
      if (inst.ui.root.isConnected && inst.header === header) inst.api.setStateValue("poll", Date.now());
    }, header.poll_ms);
  }
  invalidate(inst, PLANES);
  return inst.cleanup;
}
