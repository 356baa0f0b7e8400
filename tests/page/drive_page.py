"""Drives fusion's page in headless Chromium over the DevTools protocol, as a person
would: type a sentence and analyse; add a photo and analyse again. Prints what the page
rendered as JSON and writes screenshots. Used by tests/tests/http.rs.

usage: drive_page.py PAGE_URL PHOTO OUT_DIR
"""

import base64
import json
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket  # websocket-client


def main(url: str, photo: str, out: str) -> None:
    profile = tempfile.mkdtemp(prefix="empathy-chromium-")
    chrome = subprocess.Popen(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        # Chromium prints the DevTools address it bound on stderr.
        port = None
        for line in chrome.stderr:
            if "DevTools listening on ws://" in line:
                port = line.split("ws://127.0.0.1:")[1].split("/")[0]
                break
        if port is None:
            raise SystemExit("chromium did not start its DevTools endpoint")
        tabs = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json"))
        page = next(t for t in tabs if t["type"] == "page")
        ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60)
        ids = iter(range(1, 1_000_000))

        def call(method, **params):
            n = next(ids)
            ws.send(json.dumps({"id": n, "method": method, "params": params}))
            while True:
                message = json.loads(ws.recv())
                if message.get("id") == n:
                    if "error" in message:
                        raise SystemExit(f"{method}: {message['error']}")
                    return message.get("result", {})

        def js(expression):
            return call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

        def wait_for_answer(before):
            # The analysis id changes when an answer is shown; an error shows in #error.
            for _ in range(240):
                state = js("[document.getElementById('analysisId').textContent,"
                           " document.getElementById('error').textContent]")
                if state[1] or (state[0] and state[0] != before):
                    return
                time.sleep(0.25)
            raise SystemExit("the page showed no answer within 60 s")

        def rendered():
            return js("""({
                label: document.getElementById('label').textContent,
                error: document.getElementById('error').textContent,
                bars: document.querySelectorAll('.bar').length,
                words: [...document.querySelectorAll('#words li')].map(li => li.textContent),
                modalities: [...document.querySelectorAll('#modalities .bar span:first-child')].map(s => s.textContent),
                photoShown: !document.getElementById('photo').hidden,
                canvas: [document.getElementById('canvas').width, document.getElementById('canvas').height],
                analysisId: document.getElementById('analysisId').textContent,
            })""")

        def screenshot(name):
            shot = call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            with open(f"{out}/{name}", "wb") as f:
                f.write(base64.b64decode(shot["data"]))

        call("Page.enable")
        call("Emulation.setDeviceMetricsOverride", width=1000, height=1400,
             deviceScaleFactor=1, mobile=False)
        call("Page.navigate", url=url)
        for _ in range(40):
            if js("document.readyState") == "complete" and js("!!document.getElementById('go')"):
                break
            time.sleep(0.25)

        js("document.getElementById('text').value = 'I love this, thank you so much!'")
        js("document.getElementById('go').click()")
        wait_for_answer("")
        text = rendered()
        screenshot("page-text.png")

        document = call("DOM.getDocument")
        node = call("DOM.querySelector", nodeId=document["root"]["nodeId"], selector="#image")
        call("DOM.setFileInputFiles", files=[photo], nodeId=node["nodeId"])
        js("document.getElementById('text').value = 'We made it to the top!'")
        js("document.getElementById('go').click()")
        wait_for_answer(text["analysisId"])
        time.sleep(0.5)  # the photo is drawn once it has loaded
        with_photo = rendered()
        screenshot("page-photo.png")
        print(json.dumps({"text": text, "photo": with_photo}))
    finally:
        chrome.terminate()


if __name__ == "__main__":
    main(*sys.argv[1:4])
