from csip.cli import main

raise SystemExit(main())
