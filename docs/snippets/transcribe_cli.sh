# The key comes from LINKAI_API_KEY (never a flag: flags end up in shell history and `ps`).
# Exit status: 0 all ok, 1 some files failed, 2 bad source or destination, 3 batch-fatal error.
linkai-transcribe "$AUDIO_URL" "$TRANSCRIPTS_URL/dt=2026-11-20" \
    --base-url "$LINKAI_BASE_URL" --max-concurrency 16 --language en --quiet
