"""`POST /api/v1/services/audio/tts/customization`: the envelope check and dispatch by model.

One endpoint serves three model families (`voice-enrollment`, `qwen-voice-enrollment`,
`qwen-voice-design`) that differ in action words and id fields. The CosyVoice family lives in
`cosy_voices.py`, the Qwen families in `qwen_voices.py`, their shared helpers in
`customization_common.py`.
"""

from __future__ import annotations

from aiohttp import web

from agent.emulator import qwen_voices
from agent.emulator.context import EmulatorContext
from agent.emulator.cosy_voices import COSY_ACTIONS
from agent.emulator.customization_common import Action
from agent.emulator.errors import ApiError, invalid
from agent.emulator.httputil import json_response, read_json

FAMILIES: dict[str, dict[str, Action]] = {
    "voice-enrollment": COSY_ACTIONS,
    "qwen-voice-enrollment": qwen_voices.ENROLLMENT_ACTIONS,
    "qwen-voice-design": qwen_voices.DESIGN_ACTIONS,
}


async def handle(request: web.Request, ctx: EmulatorContext) -> web.StreamResponse:
    body = await read_json(request)
    model = body.get("model")
    if model is None or model == "":
        raise invalid("Missing required parameter 'model'.")
    if not isinstance(model, str):
        raise invalid("Parameter 'model' must be a string.")
    actions = FAMILIES.get(model)
    if actions is None:
        raise ApiError(404, "ModelNotFound", f"Model not exist: {model}")
    inp = body.get("input")
    if not isinstance(inp, dict):
        raise invalid("Missing required parameter 'input' (a JSON object).")
    params = body.get("parameters", {})
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise invalid("Parameter 'parameters' must be a JSON object.")
    action = inp.get("action")
    if not isinstance(action, str) or not action:
        raise invalid("Missing required parameter 'input.action'.")
    fn = actions.get(action)
    if fn is None:
        raise invalid(
            f"Unsupported action '{action}' for model '{model}'; supported: {', '.join(actions)}."
        )
    return json_response(request, await fn(request, ctx, inp, params))
