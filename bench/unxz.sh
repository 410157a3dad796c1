# Sourced by the GPU call scripts. unxz SRC DEST: the xz archive SRC (a carried binary) unpacked to the
# executable DEST, once. Written beside DEST and moved in only when whole: a missing or broken archive
# leaves no file there, since an empty executable would run and exit 0 as if its checks had passed.
unxz() {
  [ -x "$2" ] && return 0
  if python3 -c "import lzma,sys; open(sys.argv[2],'wb').write(lzma.open(sys.argv[1]).read())" "$1" "$2.part"; then
    chmod +x "$2.part" && mv "$2.part" "$2"
  else
    rm -f "$2.part"; echo "unxz: $1 did not unpack; $2 will not run" >&2; return 1
  fi
}
