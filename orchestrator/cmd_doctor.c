// orchestrator/cmd_doctor.c — `segx doctor`: first version (entry point only; the body lands next).
#include "orchestrator/commands.h"
#include <stdio.h>

int cmd_doctor(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "segx %s: not implemented yet\n", argv[0]);
    return 1;
}
