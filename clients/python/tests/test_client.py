"""The client against a running system (``EMPATHY_ENDPOINT``, e.g. localhost:50051).

``EMPATHY_TEST_PHOTO`` names a photo with one face (the encoder must load the image
plugin). tests/tests/python_client.rs starts the system and runs these.
"""

import asyncio
import os
import unittest

from empathy_client import (
    AsyncClient,
    Client,
    InvalidArgument,
    NotFound,
    Unavailable,
    empathy_pb2,
)

ENDPOINT = os.environ.get("EMPATHY_ENDPOINT", "localhost:50051")


class ClientTest(unittest.TestCase):
    def setUp(self):
        self.client = Client(ENDPOINT, timeout=60)

    def tearDown(self):
        self.client.close()

    def test_analyze_text(self):
        result = self.client.analyze(text="I love this, thank you so much!")
        self.assertIsInstance(result, empathy_pb2.AnalyzeResponse)
        self.assertEqual(result.sentiment.label, "positive")
        self.assertEqual(result.emotions.top, "joy")
        self.assertTrue(result.analysis_id)
        words = [a.name for a in result.attributions if a.kind == "lexicon"]
        self.assertIn("love", words)

    def test_context_as_pairs_or_speaker_lines(self):
        pairs = self.client.analyze(
            text="Perfect.", context=[("agent", "Your order shipped a week early")]
        )
        lines = self.client.analyze(
            text="Perfect.", context=["Agent: Your order shipped a week early"]
        )
        self.assertEqual(pairs.sentiment.label, lines.sentiment.label)
        context = [a for a in pairs.attributions if a.kind == "context"]
        self.assertTrue(context, "the answer says how much the context weighed")

    def test_a_face_on_a_photo_path(self):
        photo = os.environ.get("EMPATHY_TEST_PHOTO")
        if not photo:
            self.skipTest("EMPATHY_TEST_PHOTO is not set")
        result = self.client.analyze(image=photo)
        self.assertEqual(len(result.faces), 1)
        self.assertIn("image", result.modalities_used)
        with open(photo, "rb") as f:
            same = self.client.analyze(image=f.read())
        self.assertEqual(len(same.faces), 1)

    def test_errors_are_exceptions_with_the_servers_message(self):
        with self.assertRaises(InvalidArgument) as caught:
            self.client.analyze(text="")
        self.assertIn("no input", caught.exception.message)
        with self.assertRaises(NotFound) as caught:
            self.client.feedback("no-such-analysis", sentiment="positive")
        self.assertIn("original", caught.exception.message)
        with self.assertRaises(FileNotFoundError):
            self.client.analyze(image="/no/such/photo.png")
        # Still serving after the errors.
        self.assertTrue(self.client.analyze(text="fine").analysis_id)

    def test_feedback_is_stored(self):
        result = self.client.analyze(text="That was not what I expected")
        stored = self.client.feedback(result.analysis_id, sentiment="negative", emotion="surprise")
        self.assertTrue(stored.stored)
        self.assertTrue(stored.feedback_id)

    def test_info(self):
        info = self.client.info()
        self.assertEqual(list(info.sentiment_labels), ["negative", "neutral", "positive"])
        self.assertEqual(len(info.emotion_labels), 7)
        self.assertTrue(info.model_version)

    def test_unreachable_server(self):
        with Client("localhost:1", timeout=2) as dead:
            with self.assertRaises(Unavailable):
                dead.info()


class AsyncClientTest(unittest.TestCase):
    def test_concurrent_analyses(self):
        texts = [f"I am so happy today, number {i}" for i in range(20)] + [
            f"This is awful and I am angry, number {i}" for i in range(20)
        ]

        async def run():
            async with AsyncClient(ENDPOINT, timeout=120) as client:
                return await asyncio.gather(*(client.analyze(text=t) for t in texts))

        results = asyncio.run(run())
        labels = [r.sentiment.label for r in results]
        self.assertEqual(labels[:20], ["positive"] * 20)
        self.assertEqual(labels[20:], ["negative"] * 20)


if __name__ == "__main__":
    unittest.main()
