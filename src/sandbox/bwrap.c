/* SPDX-License-Identifier: Apache-2.0 */
/* placeholder */
#include "sandbox.h"

struct obx_runtime *obx_sandbox_runtime_new(const struct obx_sandbox_config *cfg,
                                            struct obx_error *err)
{
    obx_error_set(err, ENOSYS, OBX_ERR_RUNTIME_UNAVAILABLE, "not implemented");
    return NULL;
}
