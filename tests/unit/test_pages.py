"""The pages' routes: config for the browser, and a clear answer when assets are not built."""

from __future__ import annotations

import shutil
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from cvh_camera.server.config import EdgeSettings, JanusSettings, ServerConfig
from cvh_camera.server.pages import STATIC, add_pages, browser_janus_url, edge_browser_urls


async def client_for(static: Path, config: ServerConfig) -> TestClient:  # type: ignore[type-arg]
    app = web.Application()
    add_pages(app, config, static)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_missing_assets_say_how_to_build_them(tmp_path: Path) -> None:
    static = tmp_path / "static"
    shutil.copytree(STATIC, static, ignore=shutil.ignore_patterns("vendor"))
    client = await client_for(static, ServerConfig())
    try:
        for path in ("/", "/receiver", "/sender"):
            resp = await client.get(path)
            assert resp.status == 503
            assert "make web" in await resp.text()
    finally:
        await client.close()


async def test_config_for_the_browser(tmp_path: Path) -> None:
    static = tmp_path / "static"
    (static / "vendor").mkdir(parents=True)
    (static / "vendor" / "socket.io.esm.min.js").write_text("//")
    (static / "receiver.html").write_text("<html>receiver</html>")
    config = ServerConfig(socketio_path="/socket.io/5000", janus=JanusSettings(room=1234))
    client = await client_for(static, config)
    try:
        assert await (await client.get("/cvh-config.json")).json() == {
            "socketioPath": "/socket.io/5000",
            "janusUrl": "/janus",  # proxied on the server's own origin
            "room": 1234,
            "iceServers": [],
            "slots": 4,
        }
        resp = await client.get("/")
        assert resp.status == 200 and "receiver" in await resp.text()
    finally:
        await client.close()


def test_edges_as_the_pages_reach_them() -> None:
    janus = JanusSettings(
        browser_url="https://origin.example/janus",
        edges=(
            EdgeSettings("http://10.0.0.11:8088/janus"),
            EdgeSettings("http://10.0.0.12:8088/janus", browser_url="https://e1.example/janus"),
        ),
    )
    assert browser_janus_url(janus) == "https://origin.example/janus"
    assert edge_browser_urls(janus) == ["/janus-edge/0", "https://e1.example/janus"]
    assert browser_janus_url(JanusSettings()) == "/janus"


async def test_only_edges_without_a_browser_url_get_a_proxy(tmp_path: Path) -> None:
    janus = JanusSettings(
        edges=(EdgeSettings("http://127.0.0.1:9/janus"),
               EdgeSettings("http://127.0.0.1:10/janus", browser_url="https://e1/janus")),
    )  # fmt: skip
    app = web.Application()
    add_pages(app, ServerConfig(janus=janus), STATIC)
    routes = {getattr(r.resource, "canonical", "") for r in app.router.routes()}
    assert "/janus-edge/0" in routes and "/janus" in routes
    assert not any(route.startswith("/janus-edge/1") for route in routes)
