{
  "targets": [
    {
      "target_name": "warden_native",
      "sources": ["native/warden_native.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "conditions": [["OS!='linux'", {"type": "none"}]]
    }
  ]
}
