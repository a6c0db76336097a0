"""Device choice on a machine without a GPU, and the ONNX Runtime provider rules."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app import devices


def test_parse_device():
    assert devices.parse_device(None) == "auto"
    assert devices.parse_device(" CUDA:1 ") == "cuda:1"
    assert devices.parse_device("gpu") == "cuda"
    with pytest.raises(devices.DeviceError, match="unknown device 'tpu'"):
        devices.parse_device("tpu")


def test_cpu_only_tools_use_the_cpu_queue_without_torch():
    assert devices.queue_name("auto", ("numpy",)) == "cpu"
    assert devices.queue_name("cuda:1", ("torch",)) == "cuda"
    assert devices.queue_name("cpu", ("torch",)) == "cpu"


def test_choose_on_this_machine():
    if devices.cuda_device_count_driver() > 0:
        pytest.skip("needs a machine without a CUDA device")
    choice = devices.choose("auto", ("torch", "onnx"))
    assert choice.device == "cpu" and choice.dtype == "float32" and choice.kind == "cpu"
    assert choice.ort_providers == ("CPUExecutionProvider",)
    assert "CPU" in choice.description
    assert devices.choose("cpu", ("numpy",), dtype="bfloat16").dtype == "bfloat16"
    with pytest.raises(devices.DeviceError, match="CUDA was requested"):
        devices.choose("cuda", ("torch",))
    with pytest.raises(devices.DeviceError, match="dtype"):
        devices.choose("cpu", ("numpy",), dtype="int8")


def test_gpu_providers_only_when_a_device_exists():
    listed = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    if devices.cuda_device_count_driver() == 0:
        # onnxruntime-gpu lists CUDA even without a GPU: it must not be requested
        assert devices.ort_providers("auto", available=listed) == ["CPUExecutionProvider"]
        assert devices.ort_providers("cuda", available=listed) == ["CPUExecutionProvider"]
    assert devices.ort_providers("cpu", available=listed) == ["CPUExecutionProvider"]
    assert devices.ort_providers("cpu", available=[]) == ["CPUExecutionProvider"]


def test_choosing_quietly_without_gpu_and_module_import_is_light():
    code = ("import sys; import app.devices as d\n"
            "assert 'torch' not in sys.modules and 'onnxruntime' not in sys.modules\n"
            "c = d.choose('auto', ('numpy', 'onnx'))\n"
            "assert 'torch' not in sys.modules\n"
            "print(c.device, ','.join(c.ort_providers))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    if devices.cuda_device_count_driver() == 0:
        assert proc.stdout.strip() == "cpu CPUExecutionProvider"
        assert proc.stderr.strip() == ""  # no provider error spam
