#!/bin/sh
# Prints -static when the C compiler here can link a static program (glibc's libc.a is
# installed), else nothing. binding.gyp links warden-reaper statically when it can: a task
# under the subreaper tier then starts without the dynamic loader's work (about 0.2 ms a task).
dir=$(mktemp -d 2>/dev/null) || exit 0
printf 'int main(void) { return 0; }\n' > "$dir/t.c"
if ${CC:-cc} -static -o "$dir/t" "$dir/t.c" >/dev/null 2>&1; then echo -static; fi
rm -rf "$dir"
