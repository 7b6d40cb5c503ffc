"""A drawing pad for the Handwrite tab: the user writes a word or two in their own hand.

The pad is a ``gr.HTML`` canvas whose script records pointer events (so a mouse, a
finger and a pen all draw): ``pointerdown`` starts a stroke, ``pointermove`` adds its
points (the coalesced ones too, so a fast pen loses none) and ``pointerup`` or
``pointercancel`` is the pen leaving the paper.  After every stroke the script writes the
strokes as JSON, ``[[[x, y], ...], ...]`` in canvas pixels with y down, the format
``studio sample --style-file`` reads, into a hidden textbox that the Handwrite action
takes as an input.  "Clear" empties both.
"""

from __future__ import annotations

import gradio as gr

PAD_WIDTH, PAD_HEIGHT = 560, 170  # canvas pixels (the page scales it down on a narrow screen)
STROKES_ID = "handwrite-pad-strokes"
CANVAS_ID = "handwrite-pad-canvas"

MARKUP = f"""
<div class="studio-pad">
  <canvas id="{CANVAS_ID}" width="{PAD_WIDTH}" height="{PAD_HEIGHT}"
          aria-label="Drawing pad: write a word or two here"></canvas>
  <div class="studio-pad-bar">
    <button type="button" class="studio-pad-clear" id="handwrite-pad-clear">Clear</button>
    <span class="studio-pad-count" id="handwrite-pad-count">Write a word or two here with a mouse, finger or pen.</span>
  </div>
</div>
"""

CSS = """
.studio-pad canvas { width: 100%; max-width: 560px; aspect-ratio: 560 / 170; background: #fff;
  border: 1px solid var(--border-color-primary, #ccc); border-radius: 6px; touch-action: none; cursor: crosshair;
  background-image: linear-gradient(to bottom, transparent 68%, #dbe4f0 68%, #dbe4f0 69%, transparent 69%); }
.studio-pad-bar { display: flex; gap: 0.75em; align-items: center; margin-top: 0.3em; font-size: 0.9em; }
.studio-pad-clear { padding: 0.15em 0.8em; border: 1px solid var(--border-color-primary, #ccc); border-radius: 4px; }
"""

SCRIPT = f"""
const canvas = element.querySelector('canvas');
const context = canvas.getContext('2d');
const count = element.querySelector('.studio-pad-count');
const strokes = [];
let current = null;
function at(event) {{
  const box = canvas.getBoundingClientRect();
  return [Math.round((event.clientX - box.left) * canvas.width / box.width * 10) / 10,
          Math.round((event.clientY - box.top) * canvas.height / box.height * 10) / 10];
}}
function redraw() {{
  context.clearRect(0, 0, canvas.width, canvas.height);
  context.lineWidth = 2.5; context.lineCap = 'round'; context.lineJoin = 'round'; context.strokeStyle = '#1a1a2e';
  for (const stroke of strokes) {{
    context.beginPath();
    context.moveTo(stroke[0][0], stroke[0][1]);
    for (const point of stroke.slice(1)) context.lineTo(point[0], point[1]);
    if (stroke.length === 1) context.lineTo(stroke[0][0] + 0.1, stroke[0][1]);
    context.stroke();
  }}
}}
function publish() {{
  const box = document.querySelector('#{STROKES_ID} textarea, #{STROKES_ID} input');
  if (box) {{
    box.value = strokes.length ? JSON.stringify(strokes) : '';
    box.dispatchEvent(new Event('input', {{bubbles: true}}));
  }}
  const points = strokes.reduce((total, stroke) => total + stroke.length, 0);
  count.textContent = strokes.length ? `${{strokes.length}} stroke(s), ${{points}} points`
                                     : 'Write a word or two here with a mouse, finger or pen.';
}}
canvas.addEventListener('pointerdown', (event) => {{
  event.preventDefault();
  canvas.setPointerCapture(event.pointerId);
  current = [at(event)];
  strokes.push(current);
  redraw();
}});
canvas.addEventListener('pointermove', (event) => {{
  if (!current) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  for (const each of (events.length ? events : [event])) current.push(at(each));
  redraw();
}});
function lift() {{
  if (!current) return;
  current = null;
  publish();
}}
canvas.addEventListener('pointerup', lift);
canvas.addEventListener('pointercancel', lift);
element.querySelector('.studio-pad-clear').addEventListener('click', () => {{
  strokes.length = 0;
  current = null;
  redraw();
  publish();
}});
"""


def build_pad() -> gr.HTML:
    """The pad, a ``gr.HTML`` canvas with its script."""
    return gr.HTML(MARKUP, css_template=CSS, js_on_load=SCRIPT, elem_id="handwrite-pad")


def build_strokes_box() -> gr.Textbox:
    """The hidden textbox the pad writes its strokes into, the input the Handwrite action
    reads.  Built outside any group whose visibility changes (showing a group shows
    its hidden children too), and hidden by the style sheet as well."""
    return gr.Textbox(
        "", visible="hidden", elem_id=STROKES_ID, elem_classes=["studio-hidden"], label="Your strokes (JSON)"
    )
