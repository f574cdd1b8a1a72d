from lrm.cli.main import main

raise SystemExit(main())
