"""The evaluation report for people: one self-contained HTML page per checkpoint (figures
embedded, and linked as the PNG files beside it)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from jinja2 import Environment

from rodi.atomic import replacing
from rodi.evaluation import metrics as table

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>rodi report: {{ m.variant }} on {{ m.protocol }}, step {{ m.step }}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 70em; margin: 2em auto; padding: 0 1em; \
color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; image-rendering: pixelated; }
.note { color: #555; font-size: 0.9em; }
</style></head><body>
<h1>rodi report: {{ m.variant }} on {{ m.protocol }}, step {{ m.step }}</h1>
<p>Checkpoint <code>{{ m.checkpoint }}</code>; {{ "%.1f"|format(m.train_seconds / 60) }} \
{{ metric("train_seconds").unit }} of training;
{{ label("gamma") }} {{ "%.4g"|format(m.gamma) }}, {{ label("lambda") }} \
{{ "%.4g"|format(m.lambda) }} ({{ label("epsilon") }} {{ m.epsilon }}).</p>

<h2>Transfer on {{ m.num_triplets }} held-out {{ m.transfer_target }}</h2>
<p class="note">Pixels in [-1, 1]. \
{% if m.transfer_target == "pairs" %}User data has no third image:
the pose input is also the target, so leakage goes unpunished here; read it beside the \
probes.{% else %}
Appearance of A in pose q, pose of B in pose p, compared with the exact render of A in \
pose p.{% endif %}</p>
<table><tr><th>measure</th><th>mean</th><th>median</th><th>std</th></tr>
{% for name, s in quality %}<tr><td>{{ name }}</td><td>{{ fmt(s.mean) }}</td>\
<td>{{ fmt(s.median) }}</td><td>{{ fmt(s.std) }}</td></tr>
{% endfor %}</table>

{% if m.fomm %}
<h2>{{ label("fomm") }} on {{ m.fomm.clips }} {{ label("fomm.clips") }} \
({{ m.fomm.frames }} frames)</h2>
<p class="note">As the First Order Motion Model (Siarohin et al., NeurIPS 2019) scores video \
reconstruction: the appearance from each held-out clip's first frame, the pose from frame t, the \
transfer compared with frame t, averaged over every frame of every held-out clip (t = 0 \
included). Floors: the first frame copied (no motion), and the mean of the clip's own frames (no \
single pose). rodi works at {{ m.fomm.image_size }} px and FOMM at 256 px, on other clips and \
crops: <b>these numbers are not comparable with published ones</b>.</p>
<table><tr><th>measure</th>{% for _, name in fomm_columns %}<th>{{ name }}</th>{% endfor %}</tr>
{% for key, name in fomm_rows if key in m.fomm %}<tr><td>{{ name }}</td>\
{% for k, _ in fomm_columns %}<td>{% if k == "transfer" %}<b>{{ fmt(m.fomm[key][k]) }}</b>\
{% else %}{{ fmt(m.fomm[key][k]) }}{% endif %}</td>{% endfor %}</tr>
{% endfor %}</table>
{% endif %}

{% if m.keypoints %}
<h2>{{ label("keypoints")|capitalize }} on {{ m.keypoints.pairs }} \
{{ label("keypoints.pairs") }}</h2>
<p class="note">A human keypoint detector reads the joints of each output and of its pose frame \
(a frame of identity B, while the appearance comes from identity A): \
<b>{{ m.keypoints.detector }}</b>. It found joints in {{ m.keypoints.pose_frames_with_joints }} \
of {{ m.keypoints.pose_frames }} pose frames, {{ "%.1f"|format(m.keypoints.joints_per_pose_frame) \
}} of {{ m.keypoints.joints }} joints each on average. AKD, as FOMM defines it: the mean \
absolute coordinate difference ({{ m.keypoints.distance }}) of the joints found in both, in pixels \
of the {{ m.keypoints.image_size[1] }} px image (lower is better); MKR: the fraction of the pose \
frame's joints that the output misses. Floors: the appearance input copied (wrong pose) and the \
mean pose frame (no one); ceilings: the self-reconstruction (the pose frame from its own codes) \
and the pose frame at half size and back (how far the detector moves on a softer copy of the same \
picture). The detector is the judge: <b>these numbers are not comparable with OpenPose-based \
or published figures</b>.</p>
<table><tr><th>measure</th>{% for _, name in keypoint_columns %}<th>{{ name }}</th>{% endfor %}\
</tr>
{% for key, name in keypoint_rows %}<tr><td>{{ name }}</td>{% for k, _ in keypoint_columns %}\
<td>{% if k == "transfer" %}<b>{{ fmt(m.keypoints[key][k]) }}</b>{% else %}\
{{ fmt(m.keypoints[key][k]) }}{% endif %}</td>{% endfor %}</tr>
{% endfor %}</table>
{% endif %}

{% if m.appearance_judge %}
<h2>{{ label("appearance_judge")|capitalize }} and {{ label("appearance_distance") }}</h2>
<p class="note">The judge is an embedding network trained with a triplet loss on the training \
identities ({{ m.appearance_judge.train_identities }} of them, \
{{ m.appearance_judge.train_steps }} steps; {{ m.appearance_judge.origin }}, \
{{ m.appearance_judge.fingerprint }}), as FOMM's AED uses a re-identification network. Its own \
quality, on held-out identities it never saw: re-identification top-1 (each frame matched to the \
nearest first frame of a held-out identity) and the mean distances of two frames of one identity \
and of two identities (embeddings have unit length: distances lie in [0, 2]).</p>
{% if m.appearance_judge.top1 is defined %}<table><tr><th>judge quality</th><th>value</th></tr>
{% for key, name in judge_rows %}<tr><td>{{ name }}</td>\
<td>{{ fmt(m.appearance_judge[key]) }}</td></tr>
{% endfor %}</table>{% endif %}
{% if m.appearance_distance %}
<p class="note">{{ m.appearance_distance.pairs }} {{ label("appearance_distance.pairs") }}: \
transfers between held-out identities, appearance from a frame of A, pose from a frame of B. \
Same-identity pairs cannot show leakage; these can. Copying the appearance input scores well \
here but has the wrong pose: read this beside FOMM's protocol above. Self-reconstruction: A's \
frame rendered from its own codes.</p>
<table><tr><th>embedding distance</th>\
{% for _, name in cross_columns %}<th>{{ name }}</th>{% endfor %}</tr>
{% for key, name in cross_rows %}<tr><td>{{ name }}</td>{% for k, _ in cross_columns %}<td>\
{% if k == "transfer" %}<b>{{ fmt(m.appearance_distance[key][k]) }}</b>{% else %}\
{{ fmt(m.appearance_distance[key][k]) }}{% endif %}</td>{% endfor %}</tr>
{% endfor %}</table>
<p>{{ normalised_label }}: <b>{{ fmt(m.appearance_distance.normalised) }}</b></p>
{% endif %}
{% endif %}

{% if m.pose_accuracy %}
<h2>Pose accuracy of transfers</h2>
<p class="note">A judge trained on exact renders ({{ m.judge_train_steps }} steps\
{% if m.judge %}; {{ m.judge.origin }}\
{% if m.judge.fingerprint %}, renders {{ m.judge.fingerprint }}{% endif %}{% endif %}) \
reads the pose of each transfer.
Ceiling: the judge on the exact targets. Floor: the best of three outputs that know no pose: \
the appearance input
(whose pose is wrong), the mean held-out target image and one constant average body (the \
target closest to that mean).
Normalised: (transfer - floor) / (ceiling - floor), 0 at the floor and 1 at the ceiling, \
not clipped.
PCK: fraction of keypoints within 0.05 or 0.1 of the image side of the target's keypoints; \
pixel error in pixels (lower is better);
labels: accuracy against the pose input's label. A transfer can score below its floor when it
shows neither input's pose.</p>
<table><tr><th>measure</th><th>floor</th><th>transfer</th><th>ceiling</th><th>normalised</th></tr>
{% for name, v in m.pose_accuracy.items() %}<tr><td>{{ label("pose_accuracy." ~ name) }}</td>\
<td>{{ fmt(v.floor) }}</td><td><b>{{ fmt(v.transfer) }}</b></td><td>{{ fmt(v.ceiling) }}</td>\
<td>{{ fmt(v.normalised) }}</td></tr>
{% endfor %}</table>
<h2>Appearance retention of transfers</h2>
<p class="note">Accuracy of the judge's attribute predictions on each transfer against the \
appearance input's attributes.
Ceiling: the judge on the exact targets. Floor: the best of the pose input (whose appearance \
is wrong), the mean
held-out target image and the constant average body. The mean's normalised score is the mean \
of the attributes' normalised scores. Self-reconstruction: the same judge on D(pi(x'), alpha(x')), \
the appearance input rendered from its own codes. Nothing has to be disentangled there, so it \
is what the model renders of an appearance at all: a transfer well below it loses appearance \
to the pose input; one near it is limited by the rendering.</p>
<table><tr><th>attribute</th><th>floor</th><th>transfer</th><th>ceiling</th><th>normalised</th>\
<th>self-reconstruction (normalised)</th></tr>
{% for name, v in m.appearance_retention.items() %}<tr>\
<td>{{ label("appearance_retention." ~ name) }}</td><td>{{ fmt(v.floor) }}</td>\
<td><b>{{ fmt(v.transfer) }}</b></td><td>{{ fmt(v.ceiling) }}</td>\
<td>{{ fmt(v.normalised) }}</td>\
<td>{{ fmt(v.self_reconstruction) }} ({{ fmt(v.normalised_self_reconstruction) }})</td></tr>
{% endfor %}</table>
{% endif %}

{% if m.probes or m.posthoc_mi_nats is not none %}
<h2>Leakage probes and mutual information</h2>
<p class="note">Probes: classifiers trained on codes of training appearances, scored on \
held-out ones;
chance is the majority class. "Pose sample" is a draw from the pose posterior, as the decoder \
sees it
in training; "pose mean" is the posterior mean, which transfers use.
Post-hoc MI: a critic trained after the fact on frozen codes, in nats.</p>
<table><tr><th>probe</th><th>accuracy</th><th>chance</th><th>reading</th></tr>
{% for key, name, reading in probes if key in m.probes %}<tr><td>{{ name }}</td>\
<td>{{ fmt(m.probes[key]) }}</td><td>{{ fmt(m.probes[key + "_chance"]) }}</td>\
<td>{{ reading }}</td></tr>
{% endfor %}
{% if m.posthoc_mi_nats is not none %}{% for x in mi %}<tr><td>{{ x.label }}</td>\
<td>{{ fmt(m[x.key]) }} {{ x.unit }}</td><td>0</td><td>{{ x.note }}</td></tr>{% if not loop.last %}
{% endif %}{% endfor %}{% endif %}
</table>
{% endif %}

<h2>Figures</h2>
{% for f in figures %}<figure id="{{ f.name }}"><img src="data:image/png;base64,{{ f.data }}" \
alt="{{ f.name }}: {{ f.caption }}">
<figcaption><b>{{ f.name }}</b> (<a href="{{ f.file }}">{{ f.file }}</a>): {{ f.caption }}\
</figcaption></figure>
{% endfor %}
</body></html>
"""


def _titled(key: str) -> str:
    """The label of a transfer measure with how to read it or its unit: ``transfer PSNR (dB)``."""
    m = table.metric(key)
    return f"{m.label} ({m.note or m.unit})" if m.note or m.unit else m.label


def _fmt(v) -> str:
    if v is None:
        return ""
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def write_html(metrics: dict, figures: list[tuple[str, str | os.PathLike, str]],
               path: str | os.PathLike) -> Path:
    """Write the report page.

    Args:
        metrics: as :func:`rodi.evaluation.report.evaluate_checkpoint` returns them.
        figures: (name, PNG path, caption) per figure; each PNG is embedded and linked by its path
            relative to the page.
        path: the HTML file to write (atomically: a temporary name, then renamed).

    Raises:
        OSError: a figure cannot be read or the page cannot be written.
    """
    path = Path(path)
    figs = [{"name": name, "caption": caption, "file": os.path.relpath(file, path.parent),
             "data": base64.b64encode(Path(file).read_bytes()).decode("ascii")}
            for name, file, caption in figures]
    quality = [(_titled("triplet_mse"), metrics["triplet_mse"]),
               (_titled("reconstruction_mse"), metrics["reconstruction_mse"])]
    if "image_quality" in metrics:
        quality += [(_titled("image_quality.ssim"), metrics["image_quality"]["ssim"]),
                    (_titled("image_quality.psnr_db"), metrics["image_quality"]["psnr_db"])]
    probes = [(x.key.removeprefix("probes."), x.label, x.note) for x in table.under("probes")]
    fomm_rows = [(k, _titled(f"fomm.{k}")) for k in ("l1", "mse", "ssim", "psnr_db", "aed")]
    judge_rows = [(k, _titled(f"appearance_judge.{k}"))
                  for k in ("top1", "top1_chance", "same_distance", "different_distance", "auc")]
    cross_rows = [(k, _titled(f"appearance_distance.{k}")) for k in ("to_appearance", "to_pose")]
    keypoint_rows = [(k, _titled(f"keypoints.{k}")) for k in ("akd_px", "mkr")]
    mi = [table.metric("posthoc_mi_nats"), table.metric("posthoc_mi_mean_nats")]
    page = Environment(autoescape=True).from_string(_TEMPLATE).render(
        m={"probes": {}, "posthoc_mi_nats": None, "pose_accuracy": None, "fomm": None,
           "appearance_judge": None, "appearance_distance": None, "keypoints": None,
           **metrics}, figures=figs,
        quality=quality, probes=probes, mi=mi, fmt=_fmt, label=table.label, metric=table.metric,
        fomm_rows=fomm_rows, fomm_columns=table.FOMM_COLUMNS, judge_rows=judge_rows,
        cross_rows=cross_rows, cross_columns=table.CROSS_COLUMNS, keypoint_rows=keypoint_rows,
        keypoint_columns=table.KEYPOINT_COLUMNS,
        normalised_label=_titled("appearance_distance.normalised"))
    with replacing(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
