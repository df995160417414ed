.venv/bin/python bench/split_cpu.py                # one hour per piece format, 40-min WAV, 60-min MP3 (~3 min)
.venv/bin/python bench/split_cpu.py --minutes 10   # quicker
