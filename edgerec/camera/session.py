"""The body of ``edgerec camera`` (edgerec.commands.camera maps its options here): open the source, load the
model, print and save events, end with a summary on end of file, Ctrl-C or SIGTERM."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Sequence

from edgerec.camera.events import save_event
from edgerec.camera.quiet import quiet_opencv
from edgerec.camera.reader import CameraReader
from edgerec.camera.roi import Roi
from edgerec.camera.watcher import CameraWatcher


class _Stop(Exception):
    """SIGTERM (a kiosk's service manager stopping us): end like Ctrl-C, with the summary."""


def run(source: str, rois: Sequence[Roi], *, every: int = 1, stable: int = 2, as_json: bool = False,
        save_dir: str | None = None, max_reconnects: int = 5, echo: Callable[[str], None] = print,
        echo_err: Callable[[str], None] = print, model_options: dict | None = None, overwrite: bool = False) -> int:
    """The body of ``edgerec camera``: returns the exit status (0 at end of file or Ctrl-C; 1 when an event could
    not be saved in ``save_dir``: each such event is one error line, and the run goes on; 1 when a video file gave
    no frame at all).

    Opens the source before loading the model, so a missing camera is an error at once. A file already in
    ``save_dir`` is replaced only with ``overwrite`` (else the event takes the next free ``_2``, ``_3`` name). A
    video file that ends before the frames its container lists ends with a warning line saying how many were read.
    OpenCV's and FFmpeg's own log lines are silenced.
    """
    from edgerec.api import create_model
    from edgerec.commands.shell import plain

    reader = CameraReader(source, every=every, max_reconnects=max_reconnects)
    watcher: CameraWatcher | None = None
    ended = False  # end of file, Ctrl-C or SIGTERM (not an error): the summary is always printed then
    at_end = False  # the source itself ended (a file's last frame), not Ctrl-C
    failed = 0
    old_term = None
    try:
        old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: no handler, the caller stops us
        pass
    try:
        with quiet_opencv():
            try:
                reader.open()  # SIGTERM and Ctrl-C already end us while a source is slow to open
            except (KeyboardInterrupt, _Stop):
                echo_err(f"edgerec camera: stopped while opening {plain(reader.name)}")
                raise
            model = create_model(**(model_options or {}))
            watcher = CameraWatcher(model, reader, rois, stable=stable, keep_crops=bool(save_dir))
            for ev in watcher:
                echo(json.dumps(ev.to_json(), ensure_ascii=False) if as_json else ev.line())
                if save_dir:
                    try:  # an event that cannot be saved is an error line; the run and the other events go on
                        save_event(ev, save_dir, overwrite=overwrite)
                    except Exception as exc:  # the disk, the encoder, or a file that is already there
                        failed += 1
                        why = f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) and exc.strerror \
                            else str(exc)
                        echo_err(f"edgerec: error: frame {ev.frame_index} roi{ev.roi_index}: cannot save it in "
                                 f"{plain(save_dir)}: {plain(why)}")
            ended = at_end = True
    except (KeyboardInterrupt, _Stop):
        ended = True
    finally:
        reader.close()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        if watcher is not None and (ended or watcher.stats.frames_recognized):
            echo_err(f"edgerec camera: {plain(watcher.stats.summary())}")
        early = reader.ended_early() if at_end else None
        if early and reader.frames_read == 0:
            failed += 1
            echo_err(f"edgerec: error: {plain(early)}")
        elif early:
            echo_err(f"edgerec camera: warning: {plain(early)}")
    return 1 if failed else 0


def _on_sigterm(*_: object) -> None:
    raise _Stop()
