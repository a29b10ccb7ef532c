{
  "targets": [
    {
      "target_name": "warden_native",
      "sources": ["native/warden_native.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "conditions": [["OS!='linux'", {"type": "none"}]]
    },
    {
      "target_name": "warden-reaper",
      "type": "executable",
      "sources": ["native/warden_reaper.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "ldflags": ["<!@(sh native/static-ldflags.sh)"],
      "conditions": [["OS!='linux'", {"type": "none"}]]
    }
  ]
}
