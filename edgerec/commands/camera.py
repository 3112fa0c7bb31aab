"""``edgerec camera``: read regions of a camera, video file or stream, frame by frame."""

from __future__ import annotations

import sys

import click

from edgerec.commands.common import PRECISION_OPTION, RECHECK, USE_HPIP, WIDTH_BUCKET, fail, recheck_options
from edgerec.commands.shell import plain
from edgerec.errors import EdgeRecError
from edgerec.zoo.cards import DEFAULT_MODEL


@click.command()
@click.option("--source", required=True, help="Camera index (0), a device (/dev/video0), a video file or rtsp://...")
@click.option("--roi", "rois", multiple=True, metavar="X,Y,W,H",
              help="A region to read, in frame pixels; repeat for more [default: the whole frame].")
@click.option("--every", type=click.IntRange(1), default=1, show_default=True, help="Recognize every Nth frame.")
@click.option("--stable", type=click.IntRange(1), default=2, show_default=True,
              help="Report a new text once it held for this many recognized frames.")
@click.option("--model", "model_name", help="Model card name [default: PP-OCRv4_mobile_rec unless --model-dir].")
@click.option("--model-dir", type=click.Path(), help="An exported IR folder, or a local Paddle/ONNX model.")
@PRECISION_OPTION
@USE_HPIP
@RECHECK
@WIDTH_BUCKET
@click.option("--device", default="cpu", show_default=True, help="cpu, GPU, GPU.0, AUTO (Intel); gpu:N (NVIDIA).")
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="Inference threads (default: all cores).")
@click.option("--max-reconnects", type=click.IntRange(0), default=5, show_default=True,
              help="Reopen a dropped live stream this many times (with backoff) before giving up.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per text change on stdout.")
@click.option("--save-dir", type=click.Path(file_okay=False),
              help="Write frame000123_roi0.json and _res.png per change into this folder; a name already there (frame "
                   "numbers restart each run) is kept and the event saved as frame000123_roi0_2.json, ... unless "
                   "--overwrite.")
@click.option("--overwrite", is_flag=True, help="With --save-dir: replace files of the same name already there.")
def camera(source, rois, every, stable, model_name, model_dir, precision, use_hpip, recheck, recheck_below,
           width_bucket, device, threads, max_reconnects, as_json, save_dir, overwrite) -> None:
    """Read text from camera frames: print each ROI's text when it changes and holds for --stable frames.

    Ends at the end of a file or on Ctrl-C, printing frames read, frames recognized, fps and latency on stderr
    (and a warning when a video file ends before the frames it lists).
    """
    from edgerec.camera import Roi, run

    try:
        boxes = [Roi.parse(r) for r in rois]
    except EdgeRecError as exc:
        raise click.BadParameter(plain(exc), param_hint="--roi") from None
    if overwrite and not save_dir:
        fail("--overwrite needs --save-dir")
    if model_name is None and model_dir is None:
        model_name = DEFAULT_MODEL
    options = {"model_name": model_name, "model_dir": model_dir, "device": device, "precision": precision,
               "use_hpip": use_hpip, "width_bucket": width_bucket, "threads": threads, "progress": False,
               **recheck_options(recheck, recheck_below)}
    try:
        code = run(source, boxes, every=every, stable=stable, as_json=as_json, save_dir=save_dir,
                   max_reconnects=max_reconnects, echo=click.echo, echo_err=lambda m: click.echo(m, err=True),
                   model_options=options, overwrite=overwrite)
    except EdgeRecError as exc:
        fail(plain(exc))  # the source's name may hold a newline or an ESC: one line, no terminal control
    except OSError as exc:  # not a save (run reports those per event): stdout, or the model's files
        if isinstance(exc, BrokenPipeError):
            raise  # the reader went away (`| head`): EdgeRecGroup ends quietly
        fail(plain(exc))
    sys.exit(code)
