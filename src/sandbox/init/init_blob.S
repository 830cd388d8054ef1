// The static warren-init binary (built from warren_init.c), embedded into
// the runtime so a sandbox's pid 1 never depends on its image.
  .section .rodata
  .balign 16
  .global warren_init_blob
  .global warren_init_blob_end
warren_init_blob:
  .incbin WARREN_INIT_BIN
warren_init_blob_end:
  .section .note.GNU-stack,"",%progbits
