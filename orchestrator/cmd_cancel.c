// orchestrator/cmd_cancel.c — `segx cancel`: first version (entry point only; the body lands next).
#include "orchestrator/commands.h"
#include <stdio.h>

int cmd_cancel(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "segx %s: not implemented yet\n", argv[0]);
    return 1;
}
