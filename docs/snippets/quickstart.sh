# --8<-- [start:demo]
bash scripts/demo.sh
# --8<-- [end:demo]

# --8<-- [start:test]
bash scripts/test.sh
# --8<-- [end:test]
