"""Test image only: what picamera2 needs to run on a machine that is no Raspberry Pi.

The emulated image has libcamera's virtual camera (a software camera, test patterns) instead
of a camera module, and qemu's "virt" machine instead of a Pi. picamera2 assumes a Pi in
four places; this module, loaded at every Python start by cvh-test-camera.pth, changes
those four and nothing else, and only once picamera2 is imported. The appliance's code is
the code a Pi runs. Never on a real SD card (image/emulate/guest/README.md).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import mmap
import sys
import types
from typing import Any


class _AnyName:
    def __getattr__(self, name: str) -> str:
        return name


def _pykms() -> types.ModuleType:
    # 1. picamera2 always imports pykms, the libdrm bindings of its DRM preview window: no
    #    Debian package has them and a VM has no display. An empty stand-in, with the one
    #    name picamera2 reads when it imports (PixelFormat.<format>, for a table).
    module = types.ModuleType("pykms", "test image: stand-in for the DRM preview's bindings")
    module.PixelFormat = _AnyName()  # type: ignore[attr-defined]
    return module


def _patch_encoders(encoders: Any) -> None:
    # 2. picamera2 finds no ISP to look at here and so takes the machine for a VC4 Pi
    #    (Pi 4 and older) with the VideoCore H.264 encoder at /dev/video11, which qemu does
    #    not emulate. What a Pi 5 gets: H264Encoder is the software LibavH264Encoder.
    encoders._hw_encoder_available = False
    encoders.H264Encoder = encoders.LibavH264Encoder
    encoders.MJPEGEncoder = encoders.LibavMjpegEncoder


def _patch_picamera2(module: Any) -> None:
    import libcamera

    # 3. Buffers: picamera2 allocates them from /dev/dma_heap by default, which Debian's
    #    arm64 kernel does not have; libcamera's own allocator works here, but it needs the
    #    open camera (an empty allocator holds the default's place until then), and its
    #    mapping of a frame is closed after each use while the software encoder still holds
    #    views of it (BufferError): like the default allocator, map each buffer once.
    allocators = sys.modules["picamera2.allocators"]

    class NoDmaHeap(allocators.Allocator):  # type: ignore[misc,name-defined]
        pass

    class MappedOnce:
        def __init__(self, allocator: Any, buffer: Any, write: bool) -> None:
            self._maps, self._buffer = allocator.maps, buffer

        def __enter__(self) -> mmap.mmap:
            if self._buffer not in self._maps:
                length = sum(plane.length for plane in self._buffer.planes)
                fd = self._buffer.planes[0].fd
                self._maps[self._buffer] = mmap.mmap(fd, length, mmap.MAP_SHARED)
            return self._maps[self._buffer]

        def __exit__(self, *exc: object) -> None:
            pass

    class LibcameraBuffers(allocators.LibcameraAllocator):  # type: ignore[misc,name-defined]
        def __init__(self, camera: Any) -> None:
            super().__init__(camera)
            self.maps: dict[Any, mmap.mmap] = {}
            self.sync = MappedOnce

    module.DmaAllocator = NoDmaHeap
    open_camera = module.Picamera2.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        open_camera(self, *args, **kwargs)
        if isinstance(self.allocator, NoDmaHeap):
            self.allocator = LibcameraBuffers(self.camera)

    module.Picamera2.__init__ = init

    # 4. Sensor modes: picamera2 lists a camera's modes from its Raw stream, and the virtual
    #    camera has no sensor, so no Raw stream. Its video stream's sizes stand in.
    read_raw_modes = module.Picamera2._get_raw_modes

    def raw_modes(self: Any) -> list[dict[str, Any]]:
        try:
            return list(read_raw_modes(self))
        except (AttributeError, RuntimeError):
            pass
        config = self.camera.generate_configuration([libcamera.StreamRole.VideoRecording])
        formats = config.at(0).formats
        return [
            {"format": str(pixel), "size": (size.width, size.height)}
            for pixel in formats.pixel_formats
            for size in formats.sizes(pixel)
        ]

    module.Picamera2._get_raw_modes = raw_modes


_PATCHES = {"picamera2.encoders": _patch_encoders, "picamera2.picamera2": _patch_picamera2}


class _Loader(importlib.abc.Loader):
    """Runs the real module, then its patch, before anyone else sees the module."""

    def __init__(self, loader: importlib.abc.Loader, patch: Any) -> None:
        self._loader, self._patch = loader, patch

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self._loader.exec_module(module)
        self._patch(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name == "pykms":
            return importlib.machinery.ModuleSpec(name, _StubLoader())
        patch = _PATCHES.get(name)
        if patch is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader, patch)
        return spec


class _StubLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _pykms()

    def exec_module(self, module: types.ModuleType) -> None:
        pass


if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
    sys.meta_path.insert(0, _Finder())
