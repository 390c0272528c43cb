"""Images and files through the unmodified official Python SDK (lark-oapi): upload an image and a
file, send them, and download them back byte-identical by key and as message resources; the
documented codes come back as the SDK's `code` (errors stay JSON on binary endpoints)."""

import io
import json
import os
import struct
import uuid as uuidlib

from lark_oapi.api.im.v1 import (
    CreateChatRequest,
    CreateChatRequestBody,
    CreateFileRequest,
    CreateFileRequestBody,
    CreateImageRequest,
    CreateImageRequestBody,
    CreateMessageRequest,
    CreateMessageRequestBody,
    GetFileRequest,
    GetImageRequest,
    GetMessageResourceRequest,
)

from conftest import ok


def png(width, height, tail=b""):
    """A PNG header of width×height, then `tail` (larkstack reads headers only)."""
    ihdr = struct.pack(">II", width, height) + bytes([8, 6, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\x1f\x15\xc4\x89" + tail


def new_chat(client):
    body = CreateChatRequestBody.builder().name(f"media {uuidlib.uuid4().hex[:8]}").build()
    return ok(client.im.v1.chat.create(CreateChatRequest.builder().request_body(body).build())).chat_id


def send(client, chat_id, msg_type, content):
    body = CreateMessageRequestBody.builder().receive_id(chat_id).msg_type(msg_type).content(json.dumps(content)).build()
    request = CreateMessageRequest.builder().receive_id_type("chat_id").request_body(body).build()
    return client.im.v1.message.create(request)


def upload_image(client, data, image_type="message"):
    body = CreateImageRequestBody.builder().image_type(image_type).image(io.BytesIO(data)).build()
    return client.im.v1.image.create(CreateImageRequest.builder().request_body(body).build())


def message_resource(client, message_id, key, kind):
    request = GetMessageResourceRequest.builder().message_id(message_id).file_key(key).type(kind).build()
    return client.im.v1.message_resource.get(request)


def test_an_image_is_uploaded_sent_and_downloaded_byte_identical(make_client):
    client = make_client("demo-bot")
    chat_id = new_chat(client)
    image = png(800, 600, os.urandom(200_000))
    key = ok(upload_image(client, image)).image_key
    assert key.startswith("img_v3_")

    message_id = ok(send(client, chat_id, "image", {"image_key": key})).message_id
    resp = message_resource(client, message_id, key, "image")
    assert resp.success(), f"code={resp.code} msg={resp.msg}"
    assert resp.file.read() == image
    assert resp.raw.headers["Content-Type"] == "image/png"

    resp = client.im.v1.image.get(GetImageRequest.builder().image_key(key).build())
    assert resp.success(), f"code={resp.code} msg={resp.msg}"
    assert resp.file.read() == image


def test_a_file_is_uploaded_sent_and_downloaded_with_its_name(make_client):
    client = make_client("demo-bot")
    chat_id = new_chat(client)
    data = os.urandom(1_200_000)
    name = "季度报告.pdf"
    body = CreateFileRequestBody.builder().file_type("pdf").file_name(name).file(io.BytesIO(data)).build()
    key = ok(client.im.v1.file.create(CreateFileRequest.builder().request_body(body).build())).file_key
    assert key.startswith("file_v3_")

    resp = client.im.v1.file.get(GetFileRequest.builder().file_key(key).build())
    assert resp.success(), f"code={resp.code} msg={resp.msg}"
    assert resp.file.read() == data
    assert resp.file_name == name

    message_id = ok(send(client, chat_id, "file", {"file_key": key})).message_id
    resp = message_resource(client, message_id, key, "file")
    assert resp.success(), f"code={resp.code} msg={resp.msg}"
    assert resp.file.read() == data
    assert resp.file_name == name


def test_documented_codes_reach_the_sdk(make_client):
    client = make_client("demo-bot")
    chat_id = new_chat(client)
    resp = upload_image(client, b"")
    assert (resp.code, resp.success()) == (234010, False)
    resp = upload_image(client, b"%PDF-1.7 not an image")
    assert resp.code == 234011
    resp = upload_image(client, png(4097, 10), image_type="avatar")
    assert resp.code == 234039

    resp = send(client, chat_id, "image", {"image_key": "img_v2_never_uploaded"})
    assert resp.code == 230001
    key = ok(upload_image(client, png(4, 4, b"x"))).image_key
    message_id = ok(send(client, chat_id, "text", {"text": "no image here"})).message_id
    resp = message_resource(client, message_id, key, "image")
    assert (resp.code, resp.file) == (234003, None)
    resp = client.im.v1.image.get(GetImageRequest.builder().image_key("img_v3_0000_unknown").build())
    assert resp.code == 234005
