/*
 * A QEMU TCG plugin that counts guest instructions, loads and stores between two marks.
 *
 * The guest marks a region with a syscall number no kernel has (MARK_SYSCALL): argument 1
 * starts it, argument 2 ends it, and every region ends as one line in the output file:
 *     <instructions> <loads> <stores>
 * Loads and stores are the memory operations QEMU emulates (a 16-byte vector access counts as
 * two); instructions are exact. Instructions are counted by adds inlined into the translated
 * code; memory operations by a callback per access (qemu 7.2's inline memory counters mix up
 * loads and stores), which is most of the plugin's cost: `memory=off` leaves them out (0).
 * Counts are summed over all guest threads, so a run with one interpreter thread counts
 * exactly what that thread executes.
 *
 *   qemu-aarch64 -plugin ./libinsn_count.so,out=counts.txt[,memory=off] -cpu cortex-a76 prog
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

enum { MARK_SYSCALL = 0x4c53, MARK_BEGIN = 1, MARK_END = 2 };

static uint64_t instructions, loads, stores;
static uint64_t begin_instructions, begin_loads, begin_stores;
static FILE *out;
static int count_memory = 1;

static void on_memory(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr,
                      void *data)
{
    if (qemu_plugin_mem_is_store(info)) {
        stores++;
    } else {
        loads++;
    }
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &instructions, n);
    for (size_t i = 0; count_memory && i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        qemu_plugin_register_vcpu_mem_cb(insn, on_memory, QEMU_PLUGIN_CB_NO_REGS,
                                         QEMU_PLUGIN_MEM_RW, NULL);
    }
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1,
                       uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6,
                       uint64_t a7, uint64_t a8)
{
    if (num != MARK_SYSCALL) {
        return;
    }
    if (a1 == MARK_BEGIN) {
        begin_instructions = instructions;
        begin_loads = loads;
        begin_stores = stores;
    } else if (a1 == MARK_END) {
        fprintf(out, "%" PRIu64 " %" PRIu64 " %" PRIu64 "\n", instructions - begin_instructions,
                loads - begin_loads, stores - begin_stores);
        fflush(out);
    }
}

static void on_exit(qemu_plugin_id_t id, void *data)
{
    fclose(out);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            path = argv[i] + 4;
        } else if (strcmp(argv[i], "memory=off") == 0) {
            count_memory = 0;
        }
    }
    if (path == NULL) {
        fprintf(stderr, "insn_count: give the output file as out=PATH\n");
        return -1;
    }
    out = fopen(path, "w");
    if (out == NULL) {
        fprintf(stderr, "insn_count: cannot write %s\n", path);
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, on_exit, NULL);
    return 0;
}
