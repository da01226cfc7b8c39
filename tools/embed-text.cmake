# SPDX-License-Identifier: Apache-2.0
# cmake -DIN=FILE -DOUT=FILE.c -DNAME=symbol -P tools/embed-text.cmake
# Writes FILE's bytes as a NUL-terminated C array `const char NAME[]` (the agent's built-in
# python-runner.py), so the text needs no file beside the binary.
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n)
set(body "")
set(i 0)
while(i LESS n)
  string(SUBSTRING "${hex}" ${i} 64 chunk)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," chunk "${chunk}")
  string(APPEND body "    ${chunk}\n")
  math(EXPR i "${i} + 64")
endwhile()
file(WRITE "${OUT}.tmp"
  "/* Generated from ${IN} by tools/embed-text.cmake; do not edit. */\n"
  "extern const char ${NAME}[];\n"
  "const char ${NAME}[] = {\n${body}    0};\n")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
