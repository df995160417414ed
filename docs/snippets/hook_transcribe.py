"""One file through LinkAIHook, outside any operator (e.g. in a @task)."""

from linkai_provider.exceptions import LinkAIFatalError, LinkAIFileError
from linkai_provider.hooks.linkai import LinkAIHook, Transcription


# --8<-- [start:transcribe]
def transcribe_one(path: str) -> Transcription | None:
    hook = LinkAIHook("linkai_default", timeout=120)
    try:
        answer = hook.transcribe(path, extra_fields={"language": "en"})
    except LinkAIFileError as exc:  # this file: bad audio (400), moderation (409), too large (413), ...
        print(f"{path}: {type(exc).__name__} (code {exc.code}): {exc.message}")
        return None
    except LinkAIFatalError:  # the key or the account: no point trying other files
        raise
    finally:
        hook.close()
    print(f"{path}: {answer.text!r} after {answer.attempts} attempt(s), {answer.latency_ms} ms")
    return answer


# --8<-- [end:transcribe]
