"""The emulator as one region of the real service: it refuses what the capability table says that
region refuses (`agent.capabilities`, the same reading the client's config checks use).

`EmulatorOptions.region` is None by default: every feature in every region, the emulator's
behaviour before regions existed (most tests exercise the protocols, not the regions). With
`--region intl` or `cn` the emulator follows the table:

- temporary upload (`getPolicy`): Beijing only. `intl` answers 403 `AccessDenied` with the upload
  document's sentence ("This feature is available only in the China (Beijing) region. Use an API
  key from this region.");
- CosyVoice models the region does not serve (v3.5 and v2 in `intl`): enrollment answers 400
  `InvalidParameter`, synthesis `task-failed` `ModelNotFound` "Model not exist" (the shapes the
  emulator already uses for unknown models; the documents give no region-specific text);
- CosyVoice voice design where the table says no (`intl`, v2): 403 `Model.AccessDenied`;
- CosyVoice cloning where the documents disagree (v3 in `intl`) is accepted: the emulator takes
  the cloning overview's side, so a daemon that tries still gets a voice (the client warns);
- the cancel directive where unsupported (`intl`, v1): ignored, the finish-task is an ordinary
  one (the task speaks what it was sent, then `task-finished`) — REF §4.1.

Error codes for region refusals are not documented; the statuses follow the documented classes
(400 bad parameter, 403 permission). See docs/emulator.md.
"""

from __future__ import annotations

from agent.capabilities import cancel_supported, lookup, tts_series, upload_supported
from agent.emulator.errors import ApiError

REGIONS = ("intl", "cn")
UPLOAD_REFUSED = ("This feature is available only in the China (Beijing) region. "
                  "Use an API key from this region.")
_NAMES = {"intl": "Singapore", "cn": "Beijing"}


def check_upload(region: str | None) -> None:
    if region is not None and not upload_supported(region):
        raise ApiError(403, "AccessDenied", UPLOAD_REFUSED)


def serves_tts_model(region: str | None, model: str) -> bool:
    """Does this region serve the CosyVoice model at all? (Unknown names: left to other checks.)"""
    if region is None:
        return True
    row = lookup("tts_model", region, tts_series(model))
    return row is None or row.support != "no"


def check_cosy_create(region: str | None, target_model: str, design: bool) -> None:
    """Refuse a CosyVoice create the region's table rows say no to (disputed rows are accepted)."""
    if region is None:
        return
    if not serves_tts_model(region, target_model):
        raise ApiError(400, "InvalidParameter",
                       f"Model '{target_model}' is not available in the {_NAMES[region]} region.")
    capability = "cosyvoice_design" if design else "cosyvoice_clone"
    row = lookup(capability, region, tts_series(target_model))
    if row is not None and row.support == "no":
        what = "Voice design" if design else "Voice cloning"
        raise ApiError(403, "Model.AccessDenied",
                       f"{what} is not supported for {target_model} in the {_NAMES[region]} region.")


def honours_cancel(region: str | None, model: str) -> bool:
    """Does finish-task with `directive: cancel` stop the task here? (None: always, as before.)"""
    return region is None or cancel_supported(region, model)
