"""Text from camera frames: read a video source with OpenCV, crop fixed regions, recognize them, report changes.

A kiosk points a camera at a display, a label or a meter and wants to know *when the text changes*, not the text
of every frame. :class:`CameraWatcher` reads frames (``--every N`` skips frames without decoding them), crops each
ROI, recognizes the crops of one frame in one call, and yields a :class:`TextEvent` when a ROI's text differs from
the last one it reported and has been the same for ``stable`` recognized frames in a row (so a frame caught
mid-update does not produce an event). Whitespace is ignored when comparing (spaces are what a recognizer
flickers on most, and PaddleOCR's metrics ignore them too), so "Gate7" -> "Gate 7" is no change. A ROI starts
as "no text", so a blank ROI reports nothing until text appears; text disappearing is reported as ``''``.

Sources: a camera index (``0``), a device (``/dev/video0``), a video file, or a stream URL (``rtsp://...``).
A file ends the run at its last frame; a file shorter than ``stable`` recognized frames (a still image)
reports a text it showed on every frame at its end. A live source that stops delivering frames is reopened
with exponential backoff, a bounded number of times, before giving up with an error.

Modules: ``roi`` (the regions), ``reader`` (opening sources, reconnecting, frames), ``watcher`` (recognizing the
ROIs of each frame and deciding when a text changed), ``events`` (an event and saving it), ``session`` (the body of
``edgerec camera``).
"""

from edgerec.camera.events import TextEvent, save_event
from edgerec.camera.quiet import quiet_opencv
from edgerec.camera.reader import CameraReader, Frame, is_live, parse_source
from edgerec.camera.roi import Roi
from edgerec.camera.session import run
from edgerec.camera.watcher import CameraWatcher, WatchStats, watch

__all__ = ["CameraReader", "CameraWatcher", "Frame", "Roi", "TextEvent", "WatchStats", "is_live", "parse_source",
           "quiet_opencv", "run", "save_event", "watch"]
