import io

import pytest

from storage import SessionStore


def tiny_png(w: int = 4, h: int = 3, color=(255, 0, 0)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def store(tmp_path):
    s = SessionStore.open(tmp_path / "session")
    yield s
    s.close()


def _record(store, prompt="a red circle", seed=1, data=b"img", inputs=(), tool="text-to-image",
           **kw):
    return store.record_run(
        tool_id=tool, plugin="text_to_image", plugin_version="0.1.0",
        params={"prompt": prompt, "steps": 10}, seed=seed, inputs=inputs,
        results=[{"kind": "image", "data": data, "ext": "png", "width": 4, "height": 3}], **kw,
    )


@pytest.fixture
def record():
    """record(store, prompt=..., seed=..., data=..., inputs=...) -> run id"""
    return _record


@pytest.fixture
def png():
    return tiny_png
