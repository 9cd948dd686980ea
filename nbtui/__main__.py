from nbtui.cli import main

raise SystemExit(main())
