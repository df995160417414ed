"""``linkai-server``: the LinkAI speech recognition API served locally, on loopback.

Modules, one concern each:

- :mod:`.cli` -- the ``linkai-server`` command line
- :mod:`.app` -- the ASGI app (contract, auth, stats, health)
- :mod:`.state` -- what one server shares between requests (config, engine, stats, credits)
- :mod:`.errors` -- error bodies in LinkAI's and OpenAI's dialects
- :mod:`.response_formats` -- ``json``, ``text``, ``srt``, ``vtt``, ``verbose_json``
- :mod:`.upload` -- streaming multipart upload with a size limit
- :mod:`.audio` -- recognising the ten formats by content
- :mod:`.engines` -- ``whisper`` (faster-whisper) and ``digest`` recognisers
- :mod:`.model` -- assembling and verifying the bundled Whisper base model
- :mod:`.faults` -- seeded fault injection
- :mod:`.stats` -- counters for tests
- :mod:`.runner` / :mod:`.connections` -- uvicorn in the foreground or in a thread
- :mod:`.testing` -- start servers from tests (thread or subprocess)
- :mod:`.pytest_plugin` -- the ``linkai_server`` fixtures
- :mod:`.audio_fixtures` -- spoken test audio in the ten formats

Importing this package imports nothing heavy: Starlette, uvicorn and faster-whisper are the
``server`` extra and are loaded only by the modules that need them.
"""
