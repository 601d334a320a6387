/* The Keras Dense layer known answer through the C ABI, and one error path.
 * Build: cc examples/c/dense.c -Iinclude -Ltarget/release -ldensecore -Wl,-rpath,target/release
 * (scripts/capi-check.sh builds the library, compiles and runs this). */
#include <stdio.h>

#include "densecore.h"

int main(void) {
    const float x[4] = {73, 84, 34, 76};                      /* 2 × 2 */
    const float w[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};      /* 2 × 5, the Keras kernel */
    const float expected[5] = {490, 600, 710, 820, 930};      /* Keras: second row */
    float y[10];

    densecore_cpu *cpu = NULL;
    if (densecore_cpu_new(DENSECORE_KERNEL_AUTO, 1, &cpu) != DENSECORE_STATUS_OK) {
        fprintf(stderr, "densecore_cpu_new: %s\n", densecore_last_error());
        return 1;
    }
    densecore_kernel kernel;
    densecore_cpu_kernel(cpu, &kernel);
    printf("densecore %s, kernel %d\n", densecore_version(), (int)kernel);

    densecore_activation relu;
    if (densecore_activation_from_name("relu", &relu) != DENSECORE_STATUS_OK) {
        fprintf(stderr, "densecore_activation_from_name: %s\n", densecore_last_error());
        return 1;
    }
    densecore_matrix xm = {x, 2, 2, 2, 1};
    densecore_matrix wm = {w, 2, 5, 5, 1};
    densecore_matrix_mut ym = {y, 2, 5, 5, 1};
    densecore_status s = densecore_dense(cpu, xm, wm, NULL, relu, ym);
    if (s != DENSECORE_STATUS_OK) {
        fprintf(stderr, "densecore_dense: %s\n", densecore_last_error());
        return 1;
    }
    printf("y[1] =");
    int ok = 1;
    for (int j = 0; j < 5; j++) {
        printf(" %g", y[5 + j]);
        ok &= y[5 + j] == expected[j];
    }
    printf("\n");
    if (!ok) {
        fprintf(stderr, "expected 490 600 710 820 930\n");
        return 1;
    }

    /* An error path: w with 3 rows does not fit x's 2 columns. */
    densecore_matrix bad = {w, 3, 3, 3, 1};
    s = densecore_dense(cpu, xm, bad, NULL, relu, ym);
    printf("bad shape: status %d: %s\n", (int)s, densecore_last_error());
    densecore_cpu_free(cpu);
    return s == DENSECORE_STATUS_SHAPE ? 0 : 1;
}
