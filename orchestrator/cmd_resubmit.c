// orchestrator/cmd_resubmit.c — `segx resubmit`: first version (entry point only; the body lands next).
#include "orchestrator/commands.h"
#include <stdio.h>

int cmd_resubmit(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "segx %s: not implemented yet\n", argv[0]);
    return 1;
}
