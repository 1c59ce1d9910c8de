// CXDP: the few bpf(2) operations ternd makes on Tern's XDP program (ebpf/tern_xdp.c), through
// libbpf. DPDK's net_af_xdp loads and attaches the program; ternd finds its maps through the
// interface and keeps `tern_vips` equal to the running config. Every symbol is prefixed `tern_`;
// functions return 0 or a negative errno.
#ifndef TERN_CXDP_H
#define TERN_CXDP_H

#include <stdint.h>

/// The descriptor of the map called `name` used by the XDP program attached to `ifindex`.
int tern_xdp_map_fd(unsigned ifindex, const char *name);

/// The XDP program attached to `ifindex`: its id (0: none) and name (up to 16 bytes with the NUL).
int tern_xdp_attached(unsigned ifindex, uint32_t *id, char name[16]);
/// Detaches the XDP program attached to `ifindex` (as net_af_xdp attached it: no mode flags).
int tern_xdp_detach(unsigned ifindex);
/// Detaches whatever XDP program is attached to `ifindex`, in the mode it was attached in.
int tern_xdp_detach_any(unsigned ifindex);

/// Attaches the program `name` of a loaded object to `ifindex`: in the driver when it can (then
/// `*generic` is 0), else generic XDP (`*generic` 1). `replace_id`: the program attached now that
/// may be replaced (0: the interface must have none).
int tern_xdp_attach(void *object, const char *name, unsigned ifindex, uint32_t replace_id, int *generic);
/// Loads an object without attaching it (the maps and programs are created); NULL on failure,
/// the reason in `*error` (a negative errno).
void *tern_bpf_object_open_load(const char *path, int *error);

/// Map operations on raw keys and values (the key and value sizes are the map's).
int tern_bpf_map_update(int fd, const void *key, const void *value);
int tern_bpf_map_delete(int fd, const void *key);
/// The key after `key` (NULL: the first) into `next`; -ENOENT after the last.
int tern_bpf_map_next_key(int fd, const void *key, void *next);
/// The sum over CPUs of a per-CPU array's 64-bit slot `index`, or a negative errno.
int64_t tern_bpf_percpu_sum(int fd, uint32_t index);

/// For tests: loads the XDP program object at `path` (not attached); its program's descriptor in
/// `*prog_fd`, its maps found by `tern_bpf_object_map_fd`. Returns an opaque handle, or NULL.
void *tern_bpf_object_load(const char *path, int *prog_fd);
int tern_bpf_object_map_fd(void *object, const char *name);
void tern_bpf_object_close(void *object);
/// Runs the program once over `frame` (BPF_PROG_TEST_RUN); its verdict in `*verdict`.
int tern_bpf_test_run(int prog_fd, const void *frame, uint32_t length, uint32_t *verdict);
/// The same, with the frame as the program left it in `out` (`*out_length` bytes).
int tern_bpf_test_run_out(
    int prog_fd, const void *frame, uint32_t length, void *out, uint32_t capacity, uint32_t *out_length, uint32_t *verdict);

void tern_close_fd(int fd);

#endif
